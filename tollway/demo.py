"""The zero-config demo: simulated models, platform tools, a SQLite file in the working directory.

``tollway serve`` without a config runs ``demo_settings()``; every other command
run without a config (``tollway accounts …``, ``keys …``, ``traces …``) uses the
same database, ``zero_config_database()``, so a key made with the CLI next to a
running demo works against it. ``demo_banner`` is printed once the server
answers: ready-to-paste commands that show streaming with its cost, a platform
tool's result streaming in, and a firewall at work.
"""

from __future__ import annotations

import os
from typing import Any

from tollway.config import Settings, parse_settings

__all__ = [
    "DEMO_CONFIG",
    "ZERO_CONFIG_DATABASE",
    "base_url",
    "demo_banner",
    "demo_settings",
    "zero_config_database",
]

ZERO_CONFIG_DATABASE = "sqlite:///tollway-demo.db"

DEMO_CONFIG: dict[str, Any] = {
    "server": {"host": "127.0.0.1", "port": 8080},
    "providers": {
        "sim": {"type": "simulated", "options": {"tokens_per_second": 40, "first_token_ms": 150}},
    },
    "models": {
        "demo-echo": {
            "deployments": [
                {
                    "provider": "sim",
                    "model": "echo",
                    "prices": {"input_per_mtok": 0.5, "output_per_mtok": 1.5},
                }
            ]
        },
        "demo-reasoner": {
            "deployments": [
                {
                    "provider": "sim",
                    "model": "reasoner",
                    "prices": {"input_per_mtok": 1, "output_per_mtok": 4},
                }
            ]
        },
        "demo-tool": {
            # calls the first platform tool the request attaches (the calculator by
            # default), then answers with its result
            "deployments": [
                {
                    "provider": "sim",
                    "model": "tool",
                    "options": {"arguments": {"expression": "6*7"}},
                    "prices": {"input_per_mtok": 1, "output_per_mtok": 4},
                }
            ]
        },
    },
    "tools": {"calculator": {}, "clock": {}},
    "defaults": {"platform_tools": ["calculator", "clock"]},
    "dashboard": {"enabled": True},
}


def zero_config_database() -> str:
    """The database of a command run without a config: ``TOLLWAY_DATABASE``, else the demo's."""
    return os.environ.get("TOLLWAY_DATABASE") or ZERO_CONFIG_DATABASE


def demo_settings(port: int | None = None, host: str | None = None) -> Settings:
    """The demo's settings (``port``/``host`` override the defaults, 127.0.0.1:8080)."""
    server = dict(DEMO_CONFIG["server"])
    if port is not None:
        server["port"] = port
    if host:
        server["host"] = host
    return parse_settings({**DEMO_CONFIG, "server": server, "database": zero_config_database()})


def base_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to ``host:port``."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _curl(url: str, key: str, body: str, stream: bool) -> str:
    return (f"  curl {'-N ' if stream else ''}{url}/v1/chat/completions \\\n"
            f'    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\\n'
            f"    -d '{body}'")


def ensure_admin_key() -> str | None:
    """The demo's admin key: ``TOLLWAY_ADMIN_KEY`` if set (None returned: not ours to
    print), else a new one, put in the environment so that every worker sees it."""
    if os.environ.get("TOLLWAY_ADMIN_KEY"):
        return None
    import secrets

    generated = "twadmin-" + secrets.token_urlsafe(24)
    os.environ["TOLLWAY_ADMIN_KEY"] = generated
    return generated


def _dashboard_line(url: str, generated_admin_key: str | None) -> str:
    admin = (f"the admin key {generated_admin_key}\n"
             "             (new at every start unless TOLLWAY_ADMIN_KEY is set)"
             if generated_admin_key else "the admin key in $TOLLWAY_ADMIN_KEY")
    return (f"  dashboard: {url}/dashboard\n"
            f"             log in with {admin},\n"
            "             or with the API key above (sees account \"demo\" only)\n")


def demo_banner(url: str, api_key: str | None, command: str = "tollway",
                admin_key: str | None = None, dashboard: bool = False) -> str:
    """Ready-to-paste examples for the running demo at ``url`` (``command`` runs the CLI).

    With ``dashboard``, a line says where it is and how to log in (``admin_key``: a
    generated admin key to print; None when it came from ``TOLLWAY_ADMIN_KEY``).
    """
    key = api_key or "unused"
    database = zero_config_database().removeprefix("sqlite:///")
    echo = ('{"model": "demo-echo", "stream": true,\n'
            '         "messages": [{"role": "user", "content": "Hello!"}]}')
    tool = ('{"model": "demo-tool", "stream": true, "platform_tools": ["calculator"],\n'
            '         "messages": [{"role": "user", "content": "What is 6*7?"}]}')
    block = ('{"model": "demo-echo", "firewall": "strict-block",\n'
             '         "messages": [{"role": "user", "content": "Mail me at jane@example.com"}]}')
    return f"""
tollway demo is running at {url}
  models:    demo-echo, demo-reasoner, demo-tool (simulated, priced like real models)
  tools:     calculator, clock (platform tools tollway runs inside the stream; attached to
             every request unless it sends "platform_tools": [])
  firewalls: strict-block, redact-pii, monitor
  API key:   {key} (account "demo"; a new key at every start)
  database:  {database} (tollway accounts/keys/credit/traces without a config use it too)
{_dashboard_line(url, admin_key) if dashboard else ""}
1. Stream an answer; the last chunk carries the usage and its cost in USD:

{_curl(url, key, echo, True)}

2. A platform tool: the calculator's result streams in before the model's answer:

{_curl(url, key, tool, True)}

3. A firewall: strict-block refuses a prompt with an email address (400; nothing
   reaches the model). With "firewall": "redact-pii" the model sees [REDACTED:email].

{_curl(url, key, block, False)}

4. The same from Python with the official SDK (pip install openai):

  python3 -c '
from openai import OpenAI
client = OpenAI(base_url="{url}/v1", api_key="{key}")
for chunk in client.chat.completions.create(model="demo-tool", stream=True,
        messages=[{{"role": "user", "content": "What is 6*7?"}}],
        stream_options={{"include_usage": True}}, extra_body={{"platform_tools": ["calculator"]}}):
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    if chunk.usage:
        print(f"\\n[{{chunk.usage.total_tokens}} tokens, ${{chunk.usage.total_cost_usd}}]")'

A second account and key, from another terminal in this directory:

  {command} accounts create team --credit 5 && {command} keys create team
"""
