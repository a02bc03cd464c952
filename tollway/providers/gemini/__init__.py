"""Google Gemini: the Gemini API (``type: gemini``) and Vertex AI (``type: vertex``).

``request.py`` builds the request, ``response.py`` reads the answer,
``provider.py`` is the Gemini API adapter and ``vertex.py`` the Vertex AI one.
"""

from __future__ import annotations

__all__: list[str] = []
