"""The ``pstn-bridge`` command.

Theory of operation: argument parsing only. Each sub-command loads settings through
:mod:`bridge.settings` and hands them to :mod:`bridge.app` (``serve``, ``carrier-sim``) or
to :mod:`bridge.users` (``user add|list|remove|passwd``, on the database of ``store.url``,
by default ``<node.var_dir>/bridge.db``, with the realm ``sip.realm``). Exit status: 0 on
success, 1 when the request is refused (a user exists or is unknown, a DID is taken, a
name, DID or password is not acceptable) with a one-line message, 2 when the
configuration or the database is unusable (the message names the option or the problem).
Passwords are read from stdin (``--password-stdin``) or a terminal prompt, or generated
and printed once; they are never written anywhere else.

``calls`` and ``call ID`` read the running bridge's ops API over HTTPS
(:mod:`bridge.ops.client`): 0 on success, 1 for an unknown call, 2 for a configuration
problem (no token, unusable CA file), 3 when the bridge cannot be reached, 4 when it
refuses the token (401) or the rate (429).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bridge.settings import CarrierSimSettings, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from bridge.ops.client import OpsClientConfig
    from bridge.users import UserInfo, UserStore

__all__ = ["main"]

EXIT_REFUSED = 1
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
    _add_user(sub)
    _add_calls(sub)
    from bridge.ops.bench_command import add_bench
    from bridge.ops.posture_command import add_posture

    add_posture(sub)
    add_bench(sub)
    return parser


def _add_calls(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    calls = sub.add_parser(
        "calls",
        help="list calls (newest first) from the running bridge's ops API",
        description="One line per call: parties, state or end reason, duration and a lock "
        "column per leg (locked / OPEN / unknown, as observed), with the PSTN caveat.",
    )
    calls.add_argument("--active", action="store_true", help="only calls going on now")
    calls.add_argument("--limit", type=int, default=None, help="at most this many (1-1000)")
    one = sub.add_parser("call", help="show one call's security record")
    one.add_argument("call_id", metavar="ID", help="the call id (c-...)")
    for command in (calls, one):
        command.add_argument("--json", action="store_true", help="print the API's JSON")
        command.add_argument(
            "--url",
            help="the bridge (default: https://<http.listen_host>:"
            "<http.listen_port> of the configuration)",
        )
        command.add_argument(
            "--token-file",
            type=Path,
            help="file holding the bearer token (default: [ops] api_token, "
            "PSTN_BRIDGE_OPS__API_TOKEN, or <var_dir>/ops-token)",
        )
        command.add_argument(
            "--ca-file",
            type=Path,
            help="CA of the bridge's certificate (default: the "
            "configured tls.ca_file, or the generated development CA)",
        )
        command.add_argument("--config", type=Path, default=None, help="TOML configuration file")


def _add_user(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="manage browser users (digest HA1s and their DIDs)")
    commands = user.add_subparsers(dest="user_command", required=True)
    add = commands.add_parser(
        "add",
        help="create a user",
        description="Create a browser user. Without --password-stdin the password is asked "
        "on a terminal (empty: generate one), or generated and printed once.",
    )
    add.add_argument("name", help="user name (letters, digits, '.', '_', '-')")
    add.add_argument(
        "--did",
        action="append",
        default=[],
        metavar="E164",
        help="a number that reaches this user (+CC...; repeatable)",
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    listing = commands.add_parser("list", help="list users and their DIDs")
    remove = commands.add_parser("remove", help="delete a user and release its DIDs")
    remove.add_argument("name")
    passwd = commands.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    for command in (add, listing, remove, passwd):
        command.add_argument("--config", type=Path, default=None, help="TOML configuration file")


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
    sim.add_argument(
        "--early-media",
        action="store_true",
        default=None,
        help="183 with SDP and the mode's audio while ringing, instead of 180",
    )
    sim.add_argument(
        "--no-announcement",
        dest="announcement",
        action="store_false",
        default=None,
        help="echo mode: no chime before the echo",
    )
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
    if args.command == "user":
        return _user(args)
    if args.command in ("calls", "call"):
        return _calls(args)
    if args.command == "posture":
        from bridge.ops.posture_command import run_posture

        return run_posture(args)
    if args.command == "bench":
        from bridge.ops.bench_command import run_bench

        return run_bench(args)
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
    "early_media",
    "announcement",
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


def _calls(args: argparse.Namespace) -> int:
    from bridge.ops.client import OpsClientError, fetch_json, render_call, render_calls

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = _ops_client_config(settings, args)
        if args.command == "calls":
            query = {"active": "true"} if args.active else {}
            if args.limit is not None:
                query["limit"] = str(args.limit)
            body = fetch_json(config, "/api/calls" + _query(query))
            text = render_calls(body["calls"]) if not args.json else None
        else:
            body = fetch_json(config, "/api/calls/" + urllib.parse.quote(args.call_id, safe=""))
            text = render_call(body) if not args.json else None
    except OpsClientError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return exc.exit_status
    print(json.dumps(body, indent=2) if text is None else text)
    return 0


def _query(params: dict[str, str]) -> str:
    return "?" + urllib.parse.urlencode(params) if params else ""


def _ops_client_config(settings: Settings, args: argparse.Namespace) -> OpsClientConfig:
    """Where the API is, its token and CA: the options, else the configuration.

    Raises:
        OpsClientError: no token could be found.
    """
    from bridge.ops.access import TOKEN_FILE
    from bridge.ops.client import OpsClientConfig, OpsClientError

    http = settings.http
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapped to loopback
    host = wildcard.get(http.listen_host, http.listen_host)
    url = args.url or f"https://{f'[{host}]' if ':' in host else host}:{http.listen_port}"
    token_file = args.token_file
    token = None
    if token_file is None and settings.ops.api_token is not None:
        token = settings.ops.api_token.get_secret_value()
    token_file = token_file or settings.node.var_dir / TOKEN_FILE
    if token is None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise OpsClientError(
                f"no ops API token: cannot read {token_file} ({exc.strerror or exc}); "
                "pass --token-file or set PSTN_BRIDGE_OPS__API_TOKEN",
                EXIT_CONFIG,
            ) from None
    ca_file = args.ca_file or settings.tls.ca_file
    dev_ca = settings.node.var_dir / "tls" / "ca.crt"
    if ca_file is None and settings.tls.cert_file is None and dev_ca.exists():
        ca_file = dev_ca
    return OpsClientConfig(url=url, token=token, ca_file=ca_file)


class _RefusedError(Exception):
    """The command cannot be done as asked (exit status 1)."""


def _user(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        password = _password(args) if args.user_command in ("add", "passwd") else None
    except _RefusedError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return asyncio.run(_user_command(args, settings, password))


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new password and whether it was generated.

    Raises:
        _RefusedError: stdin gave no password, or the two prompts differ.
    """
    from bridge.users import generate_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise _RefusedError("no password on stdin")
        return password, False
    if not sys.stdin.isatty():
        return generate_password(), True
    password = getpass.getpass("Password (empty: generate one): ")
    if not password:
        return generate_password(), True
    if getpass.getpass("Repeat the password: ") != password:
        raise _RefusedError("the passwords differ")
    return password, False


async def _user_command(
    args: argparse.Namespace, settings: Settings, password: tuple[str, bool] | None
) -> int:
    from bridge import users

    url = settings.store.url or users.sqlite_url(settings.node.var_dir / "bridge.db")
    try:
        from bridge.dbtls import store_tls_config

        tls = store_tls_config(settings.store.tls, settings.store.ca_file)
        store = await users.UserStore.open(url, tls=tls)
    except users.UserStoreError as exc:
        print(f"pstn-bridge: user database: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        await _run_user_command(store, args, settings.sip.realm, password)
    except (
        users.InvalidUserError,
        users.UserExistsError,
        users.UnknownUserError,
        users.DidTakenError,
    ) as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except users.UserStoreError as exc:
        print(f"pstn-bridge: user database: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        await store.aclose()
    return 0


async def _run_user_command(
    store: UserStore, args: argparse.Namespace, realm: str, password: tuple[str, bool] | None
) -> None:
    """Do one ``user`` sub-command (errors propagate as :class:`UserStoreError`)."""
    if args.user_command == "list":
        _print_users(await store.list_users())
        return
    if args.user_command == "remove":
        await store.remove_user(args.name)
        print(f"user {args.name} removed")
        return
    assert password is not None
    secret, generated = password
    if args.user_command == "add":
        info = await store.add_user(args.name, secret, realm, args.did)
        print(f"user {info.name} added (realm {info.realm}; DIDs: {', '.join(info.dids) or '-'})")
    else:
        await store.set_password(args.name, secret, realm)
        print(f"password of {args.name} changed")
    if generated:
        print(f"password (shown once): {secret}")


def _print_users(found: Sequence[UserInfo]) -> None:
    if not found:
        print("no users")
        return
    rows = [("NAME", "REALM", "DIDS", "CREATED", "STATUS")] + [
        (
            user.name,
            user.realm,
            ",".join(user.dids) or "-",
            user.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            "disabled" if user.disabled else "enabled",
        )
        for user in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


if __name__ == "__main__":
    sys.exit(main())
