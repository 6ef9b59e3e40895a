"""Fixtures that start real peers on loopback (PEERS.md): PKI, stunnel, SIPp, baresip.

Every fixture is function-scoped and takes fresh ports from ``peers.free_port*``, so tests can
run in parallel (pytest-xdist). Factories start a peer per call and return at once with a
handle; every peer started in a test is stopped at its teardown (last started, first
stopped). A missing binary fails the test; it never skips.

Typical compositions:

* SIPp UAC over TLS to the code under test listening on ``port``:
  ``run = sipp_tls_uac("uac_options_tls", port, calls=3)`` then
  ``res = await run.sipp.wait_async()`` and ``assert res.stats.successful == 3, res.describe()``.
* SIPp UAS behind TLS for the code under test to call:
  ``uas = sipp_tls_uas("uas_tls_echo")``; dial ``127.0.0.1:{uas.port}``; ``uas.sipp.stop()``.
* baresip gateway: ``gw = baresip("gw", "+15551230001")``; dial ``gw.uri()``;
  ``ctrl = await gw.ctrl()``; ``await ctrl.wait_event("CALL_ESTABLISHED")``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.leakscan import mark_peer_dir
from tests.pki import Pki, make_pki

from .peer_baresip import Baresip, account_line, start_baresip
from .peer_sipp import Sipp, start_sipp
from .peer_stunnel import Stunnel, client_options, server_options, start_stunnel
from .peers import free_port, free_port_block, free_port_pair, write_tone_wav


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSipp:
    """SIPp plus the stunnel that gives it TLS; ``port`` is the TLS side the code under test uses
    (UAS: where to connect; UAC: the target SIPp's stunnel dials)."""

    sipp: Sipp
    stunnel: Stunnel
    port: int


@pytest.fixture
def peer_stack() -> Iterator[contextlib.ExitStack]:
    """One ExitStack per test that stops every peer the factories started, in reverse order."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A throwaway PKI in ``tmp_path/pki`` from ``tests.pki.make_pki`` (names in that module:
    ca, server, client, rogue-ca, rogue, wrong-ip, expired, rsa-server)."""
    return make_pki(tmp_path / "pki")


def _workdir(tmp_path: Path, counter: itertools.count[int], kind: str) -> Path:
    path = tmp_path / f"{kind}-{next(counter)}"
    path.mkdir(parents=True)
    return mark_peer_dir(path)


@pytest.fixture
def stunnel_client(
    tmp_path: Path, pki: Pki, peer_stack: contextlib.ExitStack
) -> Callable[..., Stunnel]:
    """Factory: ``stunnel_client(target_port, *, client_cert=None, ca="ca", verify=True,
    check_ip="127.0.0.1", check_host=None, accept_port=None, options=None) -> Stunnel``.

    Plain TCP on ``127.0.0.1:accept_port`` becomes TLS to ``127.0.0.1:target_port``, verified
    against the PKI CA and the IP SAN (PEERS 5.1). stunnel dials only when a client connects.
    """
    counter = itertools.count(1)

    def start(
        target_port: int,
        *,
        client_cert: str | None = None,
        ca: str = "ca",
        verify: bool = True,
        check_ip: str | None = "127.0.0.1",
        check_host: str | None = None,
        accept_port: int | None = None,
        options: Mapping[str, str] | None = None,
    ) -> Stunnel:
        opts = client_options(
            pki,
            client_cert=client_cert,
            ca=ca,
            verify=verify,
            check_ip=check_ip,
            check_host=check_host,
        )
        return start_stunnel(
            peer_stack,
            _workdir(tmp_path, counter, "stunnel-client"),
            accept_port=accept_port or free_port(),
            connect_port=target_port,
            options=opts | dict(options or {}),
        )

    return start


@pytest.fixture
def stunnel_server(
    tmp_path: Path, pki: Pki, peer_stack: contextlib.ExitStack
) -> Callable[..., Stunnel]:
    """Factory: ``stunnel_server(backend_port, *, cert="server", require_cert=False, ca="ca",
    accept_port=None, options=None) -> Stunnel``.

    TLS on ``127.0.0.1:accept_port`` (certificate ``cert``; mutual TLS with ``require_cert``)
    becomes plain TCP to ``127.0.0.1:backend_port`` (PEERS 5.2).
    """
    counter = itertools.count(1)

    def start(
        backend_port: int,
        *,
        cert: str = "server",
        require_cert: bool = False,
        ca: str = "ca",
        accept_port: int | None = None,
        options: Mapping[str, str] | None = None,
    ) -> Stunnel:
        opts = server_options(pki, cert=cert, require_cert=require_cert, ca=ca)
        return start_stunnel(
            peer_stack,
            _workdir(tmp_path, counter, "stunnel-server"),
            accept_port=accept_port or free_port(),
            connect_port=backend_port,
            options=opts | dict(options or {}),
        )

    return start


@pytest.fixture
def sipp_uac(tmp_path: Path, peer_stack: contextlib.ExitStack) -> Callable[..., Sipp]:
    """Factory: ``sipp_uac(scenario, target, via_stunnel_port=None, *, service="bridge",
    calls=1, rate=100, limit=None, keys=None, extra=(), timeout_s=20, port=None) -> Sipp``.

    ``target`` ("127.0.0.1:5061" or a port) goes into the Request-URI and To; the bytes go to
    ``via_stunnel_port`` (``-rsa``) when given. Returns at once: ``sipp.wait()`` /
    ``await sipp.wait_async()`` collect the :class:`peer_sipp.SippResult`.
    """
    counter = itertools.count(1)

    def start(
        scenario: str | Path,
        target: str | int,
        via_stunnel_port: int | None = None,
        *,
        service: str = "bridge",
        calls: int = 1,
        rate: float = 100,
        limit: int | None = None,
        keys: Mapping[str, str] | None = None,
        extra: Sequence[str] = (),
        timeout_s: float = 20,
        port: int | None = None,
    ) -> Sipp:
        dest = f"127.0.0.1:{target}" if isinstance(target, int) else target
        head = [dest] + (["-rsa", f"127.0.0.1:{via_stunnel_port}"] if via_stunnel_port else [])
        load = ["-s", service, "-m", str(calls), "-r", f"{rate:g}", "-l", str(limit or calls)]
        return start_sipp(
            peer_stack,
            _workdir(tmp_path, counter, "sipp-uac"),
            scenario,
            port=port or free_port(),
            media_port=free_port_block(4, tcp=False),
            target=head,
            keys=keys,
            extra=[*load, *extra],
            timeout_s=timeout_s,
        )

    return start


@pytest.fixture
def sipp_uas(tmp_path: Path, peer_stack: contextlib.ExitStack) -> Callable[..., Sipp]:
    """Factory: ``sipp_uas(scenario, *, port=None, tls_port=None, rtp_echo=False, keys=None,
    extra=(), timeout_s=60) -> Sipp``, listening on plain TCP ``sipp.port``.

    ``tls_port`` (default: ``port``) is passed as ``-key tls_port`` for the scenarios' Contact.
    Stop it with ``sipp.stop()`` / ``await sipp.stop_async()`` (SIGUSR1) to read final stats.
    """
    counter = itertools.count(1)

    def start(
        scenario: str | Path,
        *,
        port: int | None = None,
        tls_port: int | None = None,
        rtp_echo: bool = False,
        keys: Mapping[str, str] | None = None,
        extra: Sequence[str] = (),
        timeout_s: float = 60,
    ) -> Sipp:
        port = port or free_port()
        all_keys = {"tls_port": str(tls_port or port), **(keys or {})}
        return start_sipp(
            peer_stack,
            _workdir(tmp_path, counter, "sipp-uas"),
            scenario,
            port=port,
            media_port=free_port_block(4, tcp=False),
            keys=all_keys,
            extra=[*(["-rtp_echo"] if rtp_echo else []), *extra],
            timeout_s=timeout_s,
            listen=True,
        )

    return start


@pytest.fixture
def sipp_tls_uac(
    sipp_uac: Callable[..., Sipp], stunnel_client: Callable[..., Stunnel]
) -> Callable[..., TlsSipp]:
    """Factory: ``sipp_tls_uac(scenario, target_port, *, client_cert=None, ca="ca",
    **sipp_uac_kwargs) -> TlsSipp``: stunnel client to ``127.0.0.1:target_port`` plus a UAC."""

    def start(
        scenario: str | Path,
        target_port: int,
        *,
        client_cert: str | None = None,
        ca: str = "ca",
        **kwargs: object,
    ) -> TlsSipp:
        tunnel = stunnel_client(target_port, client_cert=client_cert, ca=ca)
        uac = sipp_uac(scenario, f"127.0.0.1:{target_port}", tunnel.accept_port, **kwargs)
        return TlsSipp(sipp=uac, stunnel=tunnel, port=target_port)

    return start


@pytest.fixture
def sipp_tls_uas(
    sipp_uas: Callable[..., Sipp], stunnel_server: Callable[..., Stunnel]
) -> Callable[..., TlsSipp]:
    """Factory: ``sipp_tls_uas(scenario, *, cert="server", require_cert=False,
    **sipp_uas_kwargs) -> TlsSipp``: a UAS behind a stunnel server on ``TlsSipp.port``."""

    def start(
        scenario: str | Path,
        *,
        cert: str = "server",
        require_cert: bool = False,
        **kwargs: object,
    ) -> TlsSipp:
        tls_port = free_port()
        uas = sipp_uas(scenario, tls_port=tls_port, **kwargs)
        tunnel = stunnel_server(
            uas.port, cert=cert, require_cert=require_cert, accept_port=tls_port
        )
        return TlsSipp(sipp=uas, stunnel=tunnel, port=tls_port)

    return start


@pytest.fixture
async def baresip(
    tmp_path: Path, pki: Pki, peer_stack: contextlib.ExitStack
) -> AsyncIterator[Callable[..., Baresip]]:
    """Factory (use from async tests): ``baresip(name="gw", user="+15551230001", *,
    more_users=(), tone_hz=440.0, tone_s=30.0, answermode="auto", mediaenc="srtp-mand",
    account_params="", accounts=None, cert="server", extra_config=None, sip_trace=True,
    verbose=False) -> Baresip``.

    Ready when its TLS port (``sip_port + 1``) and ctrl_tcp port listen. Control connections
    opened with ``await inst.ctrl()`` are closed at teardown, before the process stops.
    """
    started: list[Baresip] = []

    def start(
        name: str = "gw",
        user: str = "+15551230001",
        *,
        more_users: Sequence[str] = (),
        tone_hz: float = 440.0,
        tone_s: float = 30.0,
        answermode: str = "auto",
        mediaenc: str = "srtp-mand",
        account_params: str = "",
        accounts: Sequence[str] | None = None,
        cert: str = "server",
        extra_config: Mapping[str, str] | None = None,
        sip_trace: bool = True,
        verbose: bool = False,
    ) -> Baresip:
        directory = tmp_path / f"baresip-{name}"
        directory.mkdir(parents=True)
        mark_peer_dir(directory)
        users = (user, *more_users)
        lines = accounts or [
            account_line(u, answermode=answermode, mediaenc=mediaenc, params=account_params)
            for u in users
        ]
        rtp = free_port_block(16, tcp=False)
        inst = start_baresip(
            peer_stack,
            directory,
            pki=pki,
            users=users,
            sip_port=free_port_pair(),
            ctrl_port=free_port(),
            rtp_ports=(rtp, rtp + 15),
            wav=write_tone_wav(directory / "tone.wav", tone_hz, tone_s),
            accounts=lines,
            cert=cert,
            extra_config=extra_config,
            sip_trace=sip_trace,
            verbose=verbose,
        )
        started.append(inst)
        return inst

    yield start
    for inst in started:
        await inst.aclose()
