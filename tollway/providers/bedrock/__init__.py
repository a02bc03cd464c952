"""AWS Bedrock (``type: bedrock``): the Converse and ConverseStream APIs.

``request.py`` builds the request, ``response.py`` reads the answer and
``provider.py`` signs (SigV4) and decodes the binary event stream.
"""

from __future__ import annotations

__all__: list[str] = []
