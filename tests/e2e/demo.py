"""``tollway serve`` with no config as a newcomer runs it: a process in an empty directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DemoProcess", "clean_env", "commands", "tollway_cli"]

ROOT = Path(__file__).resolve().parents[2]
BANNER_END = "keys create team"  # the banner's last line
STARTUP = 90.0  # seconds; the machine may be busy


def clean_env(bin_dir: Path | None = None) -> dict[str, str]:
    """The environment minus tollway's own variables (no config, no database, no admin key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLWAY_")}
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def tollway_cli() -> list[str]:
    return [sys.executable, "-m", "tollway"]


@dataclass
class DemoProcess:
    """A ``tollway serve`` process whose stdout and stderr are collected line by line."""

    cwd: Path
    args: list[str]
    env: dict[str, str]
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    def start(self) -> DemoProcess:
        self.proc = subprocess.Popen(
            [*tollway_cli(), "serve", *self.args], cwd=self.cwd, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()
        return self

    @staticmethod
    def _read(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = STARTUP) -> bool:
        """Whether a stdout line contains ``text`` within ``timeout`` (False if it exits)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.out):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the readers finish
                return any(text in line for line in self.out)
            time.sleep(0.02)
        return False

    def banner(self) -> str:
        assert self.wait_for(BANNER_END), "no banner:\n" + "\n".join(self.out + self.err)
        return "\n".join(self.out)

    def url(self) -> str:
        match = re.search(r"tollway demo is running at (\S+)", self.banner())
        assert match is not None
        return match.group(1)

    def key(self) -> str:
        match = re.search(r"API key:\s+(\S+)", self.banner())
        assert match is not None
        return match.group(1)

    def stop(self) -> int | None:
        """SIGTERM, then wait; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def commands(banner: str) -> list[str]:
    """The shell commands in the banner (its paragraphs that start with one), as printed."""
    return [paragraph for paragraph in re.split(r"\n\s*\n", banner)
            if paragraph.strip().startswith(("curl ", "python3 ")) or BANNER_END in paragraph]
