"""``python -m tests.adversarial --minutes 30``: the adversarial suite, long.

Runs ``tests/adversarial`` repeatedly with ``TOLLWAY_ADVERSARIAL_SCALE`` examples per
CI example and a fresh hypothesis seed per round, until the time is spent or a round
fails. Prints one line per round (seed, tests, hypothesis examples, seconds) and a
summary; exits 1 on the first failure, naming the seed that replays it.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
_EXAMPLES = re.compile(r"(\d+) passing\b")
_PASSED = re.compile(r"(\d+) passed")


def _run_round(seed: int, env: dict[str, str], extra: list[str]) -> tuple[int, int, int]:
    """One pytest run; (exit code, tests passed, hypothesis examples that passed)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--hypothesis-show-statistics", f"--hypothesis-seed={seed}", str(HERE), *extra],
        cwd=ROOT, env=env, check=False, capture_output=True, text=True,
    )  # fmt: skip
    output = result.stdout + result.stderr
    if result.returncode != 0:
        # the failure's details come first and hypothesis's statistics after them: keep all
        kept = Path(tempfile.gettempdir()) / f"tollway-adversarial-{seed}.log"
        kept.write_text(output, encoding="utf-8")
        sys.stdout.write(output[-20000:])
        sys.stdout.write(f"\n[adversarial] the whole output of this round: {kept}\n")
    examples = sum(int(n) for n in _EXAMPLES.findall(output))
    passed = _PASSED.findall(output)
    return result.returncode, int(passed[-1]) if passed else 0, examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.adversarial", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="total time to run")
    parser.add_argument("--scale", type=int, default=20, help="examples per CI example")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.minutes * 60
    env = {**os.environ, "TOLLWAY_ADVERSARIAL_SCALE": str(args.scale)}
    rounds = tests = examples = 0
    started = time.monotonic()
    while time.monotonic() < deadline:
        rounds += 1
        seed = secrets.randbelow(2**32)
        t0 = time.monotonic()
        code, passed, ran = _run_round(seed, env, args.pytest_args)
        tests += passed
        examples += ran
        print(f"[adversarial] round {rounds}: seed {seed}, exit {code}, {passed} tests, "  # noqa: T201
              f"{ran} examples, {time.monotonic() - t0:.0f} s", flush=True)
        if code != 0:
            print(f"[adversarial] FAILED in round {rounds}; rerun with "  # noqa: T201
                  f"TOLLWAY_ADVERSARIAL_SCALE={args.scale} pytest --hypothesis-seed={seed} "
                  f"tests/adversarial", flush=True)
            return 1
    print(f"[adversarial] {rounds} round(s), {tests} tests, {examples} examples passed in "  # noqa: T201
          f"{(time.monotonic() - started) / 60:.1f} min at scale {args.scale}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
