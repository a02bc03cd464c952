"""A small MCP server for the tests, written with the ``mcp`` SDK's server API.

Run as ``python mcp_docs_server.py`` (stdio) or ``... --http PORT`` (streamable HTTP).
"""

from __future__ import annotations

import asyncio
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("docs")

_DOCS = {
    "streaming": "Tollway streams every chunk as it arrives.",
    "billing": "Every request is one ledger entry.",
}


@server.tool()
def search(query: str, limit: int = 3) -> str:
    """Search the documentation; returns matching titles and text."""
    hits = [f"{title}: {text}" for title, text in _DOCS.items() if query.lower() in title]
    return "\n".join(hits[:limit]) or f"no results for {query!r}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(reason: str = "broken") -> str:
    """Always fails with the given reason."""
    raise ValueError(reason)


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "awake"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:  # streamable HTTP on 127.0.0.1:PORT/mcp
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
