"""The zero-config demo: simulated models, a SQLite file in the working directory."""

from __future__ import annotations

from typing import Any

from tollway.config import Settings, parse_settings

__all__ = ["DEMO_CONFIG", "demo_banner", "demo_settings"]

DEMO_CONFIG: dict[str, Any] = {
    "server": {"host": "127.0.0.1", "port": 8080},
    "database": "sqlite:///tollway-demo.db",
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
}


def demo_settings(port: int | None = None) -> Settings:
    config = {**DEMO_CONFIG, "server": {**DEMO_CONFIG["server"]}}
    if port is not None:
        config["server"]["port"] = port
    return parse_settings(config)


def demo_banner(base_url: str, api_key: str | None) -> str:
    """Ready-to-paste examples for the running demo."""
    key = api_key or "unused"
    return f"""
tollway demo is running at {base_url}
  models: demo-echo, demo-reasoner, demo-tool (simulated)
  demo API key: {key}

Try it:
  curl -N {base_url}/v1/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "demo-echo", "stream": true,
         "messages": [{{"role": "user", "content": "Hello!"}}]}}'

  python3 -c '
from openai import OpenAI
client = OpenAI(base_url="{base_url}/v1", api_key="{key}")
for chunk in client.chat.completions.create(model="demo-echo", stream=True,
        messages=[{{"role": "user", "content": "Hello!"}}]):
    print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)
print()'
"""
