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


def _serve(args: argparse.Namespace) -> int:
    from tollway import server
    from tollway.demo import demo_banner, demo_settings

    settings = load_cli_settings(args.config)
    if settings is None:
        settings = demo_settings(args.port)
        os.environ.pop(server.CONFIG_ENV, None)
        if args.port:
            os.environ["TOLLWAY_DEMO_PORT"] = str(args.port)
        from tollway.features import prepare_demo

        key = prepare_demo(settings)
        base = f"http://{settings.server.host}:{settings.server.port}"
        print(demo_banner(base, key), flush=True)  # noqa: T201
    else:
        os.environ[server.CONFIG_ENV] = os.path.abspath(args.config or os.environ["TOLLWAY_CONFIG"])
        if args.port or args.host:
            server_cfg = settings.server.model_copy(
                update={k: v for k, v in (("port", args.port), ("host", args.host)) if v}
            )
            settings = settings.model_copy(update={"server": server_cfg})
    server.run(settings, workers=args.workers)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    print(  # noqa: T201
        f"{args.file}: ok ({len(settings.providers)} providers, {len(settings.models)} models)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (no config: the demo)")
    serve.add_argument("--config", help="YAML config file (or TOLLWAY_CONFIG)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port")
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")
    check.set_defaults(func=_check_config)

    from tollway.features import register_cli

    register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"tollway: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
