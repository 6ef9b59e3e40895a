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

from pydantic import ValidationError

from bridge.settings import CarrierSimSettings, Settings, SettingsError, load_settings

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
    _add_carrier_sim(sub)
    return parser


def _add_carrier_sim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser(
        "carrier-sim",
        help="run the PSTN gateway simulator (SIP over TLS, SRTP), or place a call with it",
        description="A PSTN gateway simulator on the bridge's own stack. Options override "
        "the [carrier_sim] section of --config (or the embedded defaults).",
    )
    sim.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    sim.add_argument("--listen", metavar="HOST:PORT", help="SIP-TLS listener (127.0.0.1:5062)")
    sim.add_argument("--mode", choices=["echo", "tone", "play", "busy", "no-answer"])
    sim.add_argument("--play", type=Path, dest="play_file", help="WAV for --mode play (8 kHz mono)")
    sim.add_argument("--tone-hz", type=float, help="frequency of --mode tone")
    sim.add_argument("--ring-time", type=float, help="seconds of ringing before answering")
    sim.add_argument("--no-answer-timeout", type=float, help="--mode no-answer: seconds to 480")
    sim.add_argument("--record-dir", type=Path, help="record received audio, one WAV per call")
    sim.add_argument("--dtmf", dest="dtmf_to_send", help="RFC 4733 digits to send after answer")
    sim.add_argument("--dtmf-delay", type=float, help="seconds after answer before the digits")
    sim.add_argument("--hangup-after", type=float, help="hang up this many seconds after answer")
    sim.add_argument("--media-host", help="RTP address (default: the listen host)")
    sim.add_argument("--media-ports", metavar="LOW-HIGH", help="UDP port range for RTP")
    sim.add_argument("--call", metavar="NUMBER", help="place a call to NUMBER (as a carrier)")
    sim.add_argument(
        "--to",
        metavar="HOST:PORT",
        default="127.0.0.1:5061",
        help="where --call goes (default: the bridge, 127.0.0.1:5061)",
    )
    sim.add_argument("--server-name", help="name the target's certificate must carry")
    sim.add_argument("--caller", help="calling number presented with --call")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args.config)
    if args.command == "carrier-sim":
        return _carrier_sim(args)
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


def _carrier_sim(args: argparse.Namespace) -> int:
    from bridge.app import OutboundSimCall, StartupError, run_carrier_sim_command

    try:
        settings = _with_sim_options(load_settings(args.config), args)
        place = None
        if args.call:
            host, port = _host_port(args.to, "--to")
            place = OutboundSimCall(
                number=args.call,
                host=host,
                port=port,
                server_name=args.server_name,
                caller=args.caller,
            )
    except SettingsError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return asyncio.run(run_carrier_sim_command(settings, place))
    except StartupError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG


_SIM_OPTIONS = (
    "mode",
    "play_file",
    "tone_hz",
    "ring_time",
    "no_answer_timeout",
    "record_dir",
    "dtmf_to_send",
    "dtmf_delay",
    "hangup_after",
    "media_host",
)


def _with_sim_options(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with the command line's simulator options applied (and validated)."""
    values = settings.carrier_sim.model_dump()
    values.update({k: getattr(args, k) for k in _SIM_OPTIONS if getattr(args, k) is not None})
    if args.listen:
        values["listen_host"], values["listen_port"] = _host_port(args.listen, "--listen")
    if args.media_ports:
        low, _, high = args.media_ports.partition("-")
        if not (low.isdigit() and high.isdigit()):
            raise SettingsError("option --media-ports: expected LOW-HIGH, e.g. 40000-40999")
        values["media_port_range"] = (int(low), int(high))
    try:
        sim = CarrierSimSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"carrier-sim options are invalid: {problems}") from None
    return settings.model_copy(update={"carrier_sim": sim})


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"option {option}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


if __name__ == "__main__":
    sys.exit(main())
