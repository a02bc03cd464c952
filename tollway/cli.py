"""The ``tollway`` command: serve, check-config, and the feature commands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tollway.config import ConfigError, Settings, load_settings

__all__ = ["load_cli_settings", "main"]


def load_cli_settings(path: str | None) -> Settings | None:
    """Settings from ``--config`` or ``TOLLWAY_CONFIG``; None when neither is given."""
    path = path or os.environ.get("TOLLWAY_CONFIG")
    return load_settings(path) if path else None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {text!r}")
    return port


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a number of workers (1 or more): {text!r}")
    return int(text)


def _cli_command() -> str:
    """How this CLI was started, for commands printed to paste (``tollway`` if unsure)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith("__main__.py"):
        return f"{sys.executable} -m tollway"
    if os.path.basename(argv0) == "tollway" and os.sep in argv0:
        return argv0
    return "tollway"


def _serve(args: argparse.Namespace) -> int:
    from tollway import server
    from tollway.demo import base_url, demo_banner, demo_settings

    settings = load_cli_settings(args.config)
    demo = settings is None
    if settings is None:
        settings = demo_settings(args.port, args.host)
        os.environ.pop(server.CONFIG_ENV, None)
    else:
        os.environ[server.CONFIG_ENV] = os.path.abspath(args.config or os.environ["TOLLWAY_CONFIG"])
        if args.port is not None or args.host:
            server_cfg = settings.server.model_copy(update={
                k: v for k, v in (("port", args.port), ("host", args.host)) if v is not None})
            settings = settings.model_copy(update={"server": server_cfg})
    host = settings.server.host
    try:  # bind first: a taken port is one line, before anything starts
        sock = server.listen_socket(host, settings.server.port)
    except server.ListenError as exc:
        print(f"tollway: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    url = base_url(host, sock.getsockname()[1])
    if demo:
        from tollway.assembly import prepare_demo
        from tollway.demo import ensure_admin_key

        admin_key = ensure_admin_key() if settings.dashboard.enabled else None
        try:
            key = prepare_demo(settings)
        except BaseException:
            sock.close()
            raise
        banner = demo_banner(url, key, _cli_command(), admin_key=admin_key,
                             dashboard=settings.dashboard.enabled)

        def ready() -> None:
            print(banner, flush=True)  # noqa: T201
    else:
        def ready() -> None:
            print(f"tollway is running at {url}", file=sys.stderr, flush=True)  # noqa: T201

    return server.run(settings, workers=args.workers, sock=sock, on_ready=ready)


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    print(  # noqa: T201
        f"{args.file}: ok ({len(settings.providers)} providers, {len(settings.models)} models)"
    )
    return 0


# commands that need none of the features' commands: those (and the modules behind them,
# ≈ 0.2 MiB) are not loaded for them, so a serving process does without them
_CORE_COMMANDS = ("serve", "check-config")


def build_parser(feature_commands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (no config: the demo)")
    serve.add_argument("--config", help="YAML config file (or TOLLWAY_CONFIG)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=_port, help="override server.port (0: any free port)")
    serve.add_argument("--workers", type=_workers, help="worker processes sharing the port")
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")
    check.set_defaults(func=_check_config)

    if feature_commands:
        from tollway import cli_models
        from tollway.assembly import register_cli

        register_cli(sub)
        cli_models.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(feature_commands=not (words and words[0] in _CORE_COMMANDS))
    args = parser.parse_args(words)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"tollway: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
