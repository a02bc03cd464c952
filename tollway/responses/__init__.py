"""``POST /v1/responses`` (OpenAI's Responses API) as a plugin (``ResponsesPlugin``)."""

from tollway.responses.plugin import ResponsesPlugin

__all__ = ["ResponsesPlugin"]
