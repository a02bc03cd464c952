"""A newcomer's first hour: ``tollway serve`` with no config, its banner, the CLI next to it.

The server is a real ``tollway serve`` process in an empty directory; the banner's
commands are run exactly as printed (bash, curl, python3 with the openai SDK).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.demo import DemoProcess, clean_env, commands, tollway_cli

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the banner uses curl")


@pytest.fixture(scope="module")
def shell_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH entry where ``python3`` is this interpreter (it has the openai SDK)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    return bin_dir


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, shell_bin: Path) -> Iterator[DemoProcess]:
    cwd = tmp_path_factory.mktemp("newcomer")
    server = DemoProcess(cwd, ["--port", "0"], clean_env(shell_bin)).start()
    try:
        server.banner()
        yield server
    finally:
        server.stop()


def sh(command: str, demo: DemoProcess) -> str:
    """Run one banner command with bash in the demo's directory; its stdout."""
    done = subprocess.run(["bash", "-c", command], cwd=demo.cwd, env=demo.env, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def sse_chunks(text: str) -> list[dict[str, Any]]:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", text
    return [json.loads(e) for e in events[:-1]]


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_the_banner_is_printed_once_the_server_answers(demo: DemoProcess) -> None:
    # the banner was read, then at once: the server must already answer
    assert httpx.get(demo.url() + "/health", timeout=5).status_code == 200
    assert sum("tollway demo is running" in line for line in demo.out) == 1


def test_the_server_listens_on_several_handles_of_one_socket(demo: DemoProcess) -> None:
    """``tollway serve`` accepts up to ACCEPTS_PER_ITERATION connections a loop iteration:
    it listens on that many descriptors of its one listening socket."""
    from tollway.server import ACCEPTS_PER_ITERATION

    assert demo.proc is not None
    port = int(demo.url().rsplit(":", 1)[1].split("/")[0])
    inodes = _listening_inodes(port)
    assert len(inodes) == 1, inodes  # one socket, one kernel queue
    target = f"socket:[{inodes.pop()}]"
    held = [fd for fd in Path(f"/proc/{demo.proc.pid}/fd").iterdir() if _readlink(fd) == target]
    assert len(held) == ACCEPTS_PER_ITERATION


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on ``port`` (``/proc/net/tcp``)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                found.add(fields[9])
    return found


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""


def test_the_banner_shows_every_seed_feature(demo: DemoProcess) -> None:
    cmds = commands(demo.banner())
    assert len(cmds) == 5, cmds
    stream, tool, firewall, python, second_account = cmds

    # 1. streaming, with the cost on the last chunk
    chunks = sse_chunks(sh(stream, demo))
    assert "You said: Hello!" in content_of(chunks)
    usage = chunks[-1]["usage"]
    assert Decimal(str(usage["total_cost_usd"])) > 0

    # 2. a platform tool's formatted result streams in before the model's answer
    chunks = sse_chunks(sh(tool, demo))
    text = content_of(chunks)
    assert text.startswith("\n\n> calculator: 42\n\n"), text
    assert text.endswith("The tool returned: 42"), text
    records = [c["choices"][0]["delta"]["platform_tool"] for c in chunks
               if c["choices"] and "platform_tool" in c["choices"][0]["delta"]]
    assert [(r["name"], r["result"]) for r in records] == [("calculator", 42)]
    assert Decimal(str(chunks[-1]["usage"]["total_cost_usd"])) > 0

    # 3. strict-block at work: refused before the model
    error = json.loads(sh(firewall, demo))["error"]
    assert error["code"] == "content_filter" and "strict-block" in error["message"]
    assert "email" in error["message"] and "jane@example.com" not in error["message"]

    # 4. the same from Python with the openai SDK
    out = sh(python, demo)
    assert out.startswith("\n\n> calculator: 42\n\nThe tool returned: 42\n["), out
    cost = re.search(r"\[(\d+) tokens, \$([0-9.e-]+)\]", out)
    assert cost is not None and int(cost.group(1)) > 0 and Decimal(cost.group(2)) > 0

    # 5. a second account and key with the CLI, against the running demo
    key = re.search(r"^(tw-\S+)$", sh(second_account, demo), re.M)
    assert key is not None
    client = openai.OpenAI(base_url=demo.url() + "/v1", api_key=key.group(1), max_retries=0)
    reply = client.chat.completions.create(
        model="demo-echo", messages=[{"role": "user", "content": "I am acme"}])
    assert reply.choices[0].message.content is not None
    assert "You said: I am acme" in reply.choices[0].message.content


def test_the_demo_tool_model_uses_the_tool_it_is_given(demo: DemoProcess) -> None:
    client = openai.OpenAI(base_url=demo.url() + "/v1", api_key=demo.key(), max_retries=0)
    for tools, name in ((["clock"], "clock"), (None, "calculator")):  # None: the demo's default
        extra = {} if tools is None else {"extra_body": {"platform_tools": tools}}
        reply = client.chat.completions.create(
            model="demo-tool", messages=[{"role": "user", "content": "now?"}], **extra)
        message = reply.choices[0].message
        [record] = (message.model_extra or {})["platform_tool_calls"]
        assert record["name"] == name and "error" not in record, record
        assert message.content is not None and message.content.startswith(f"\n\n> {name}: ")
    plain = client.chat.completions.create(
        model="demo-echo", n=2, messages=[{"role": "user", "content": "x"}],
        extra_body={"platform_tools": []})  # n > 1 needs the default tools off
    assert plain.choices[0].message.content == "Hello from tollway's simulated model. You said: x"


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_first_steps_work_against_the_demo(demo: DemoProcess) -> None:
    text = README.read_text()
    block = re.search(r"\*\*First steps with the running demo\*\*.*?```bash\n(.*?)```", text, re.S)
    assert block is not None
    shim = demo.cwd / ".venv" / "bin" / "tollway"  # what the README's install made
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tollway "$@"\n')
    shim.chmod(0o755)
    script = block.group(1).replace("http://127.0.0.1:8080", demo.url())
    out = sh("set -e\n" + script, demo)
    reply = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert "You said: Hi" in reply["choices"][0]["message"]["content"]
    assert re.search(r"debit\s+-0\.\d+\s+" + reply["id"].replace("chatcmpl-", "req_"), out), out


def cli(demo: DemoProcess, *argv: str) -> Any:
    """A ``tollway`` CLI command with no config in the demo's directory (``--json``)."""
    done = subprocess.run([*tollway_cli(), *argv, "--json"], cwd=demo.cwd, env=demo.env,
                          text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_key_made_with_the_cli_works_against_the_demo(demo: DemoProcess) -> None:
    account = cli(demo, "accounts", "create", "newcomer", "--credit", "2")
    key = cli(demo, "keys", "create", "newcomer")["key"]
    client = openai.OpenAI(base_url=demo.url() + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="demo-echo", messages=[{"role": "user", "content": "hi"}])
    assert reply.usage is not None
    ledger = cli(demo, "ledger", "newcomer")["data"]
    assert [e["kind"] for e in ledger] == ["debit", "credit"]
    assert ledger[0]["request_id"] == reply.id.replace("chatcmpl-", "req_")
    assert account["name"] == "newcomer"
    assert (demo.cwd / "tollway-demo.db").exists() and not (demo.cwd / "tollway.db").exists()


def _listening() -> socket.socket:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken


@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_port_is_one_clear_line(tmp_path: Path, workers: int) -> None:
    with _listening() as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*tollway_cli(), "serve", "--port", str(port), "--workers", str(workers)],
            cwd=tmp_path, env=clean_env(), text=True, capture_output=True, timeout=60)
    assert done.returncode != 0
    assert done.stdout == ""  # no banner
    assert done.stderr.strip() == (
        f"tollway: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(another tollway? choose a port with --port)")
    assert not (tmp_path / "tollway-demo.db").exists()  # nothing started


@pytest.mark.slow
def test_the_demo_with_two_workers(tmp_path: Path, shell_bin: Path) -> None:
    server = DemoProcess(tmp_path, ["--port", "0", "--workers", "2"], clean_env(shell_bin))
    server.start()
    try:
        url = server.url()
        assert httpx.get(url + "/health", timeout=5).status_code == 200
        _stream, tool, *_ = commands(server.banner())
        for _ in range(4):  # whichever worker answers
            text = content_of(sse_chunks(sh(tool, server)))
            assert text == "\n\n> calculator: 42\n\nThe tool returned: 42"
    finally:
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 30
