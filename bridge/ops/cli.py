"""The ``pstn-bridge`` command.

Theory of operation: argument parsing only. Each sub-command loads settings through
:mod:`bridge.settings` and hands them to :mod:`bridge.app`; errors in the configuration
are printed (naming the option) and end the process with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge.settings import SettingsError, load_settings

__all__ = ["main"]

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pstn-bridge",
        description="Encrypted voice bridge between browsers and the phone network.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the bridge (SIP-TLS, HTTPS and WSS listeners)")
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML configuration file (default: the embedded development defaults)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args.config)
    return 1  # pragma: no cover - argparse requires a known command


def _serve(config: Path | None) -> int:
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from bridge.app import StartupError, serve

    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
