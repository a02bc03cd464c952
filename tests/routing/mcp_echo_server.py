"""An MCP server (stdio) whose one tool fails echoing a secret from its environment."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("echo")


@server.tool()
def login() -> str:
    """Fails the way a careless server does: it says what it was given."""
    token = os.environ.get("ECHO_TOKEN", "")
    raise ToolError(f"bad token {token[:16]} (was {token})")


if __name__ == "__main__":
    server.run()
