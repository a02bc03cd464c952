"""``POST /v1/embeddings``: routed, metered, traced, as a plugin (``EmbeddingsPlugin``)."""

from tollway.embeddings.plugin import EmbeddingsPlugin

__all__ = ["EmbeddingsPlugin"]
