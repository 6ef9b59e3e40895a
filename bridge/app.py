"""Composition root: settings in, running listeners out.

Theory of operation: the only module that imports everything. :func:`start` maps the
validated :class:`~bridge.settings.Settings` to each package's own configuration
objects (TLS contexts, endpoint configs, the digest server), starts the SIP-over-TLS
listener and the HTTPS server (root page with HSTS, SIP over secure WebSocket), and
returns a :class:`RunningBridge` to stop them. :func:`serve` runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from sip_gateway.aio.endpoint import SipEndpointConfig
from sip_gateway.aio.stream import SipTlsServer
from sip_gateway.aio.websocket import SipWebSocketService
from sip_gateway.carrier_sim import (
    CarrierSimConfig,
    CarrierSimulator,
    SimMode,
    WavFormatError,
    run_carrier_sim,
)
from sip_gateway.devcerts import ensure_dev_pki
from sip_gateway.tls import (
    ClientAuth,
    TlsClientConfig,
    TlsPolicyError,
    TlsServerConfig,
    server_context,
)
from sip_gateway.trunk import (
    CallerIdRules,
    CallFailedError,
    TrunkConfig,
    TrunkGateway,
    TrunkStatusChanged,
)

from .auth import AuthGuard, AuthGuardConfig, BrowserAuth
from .call.browser import BrowserProfile
from .call.orchestrator import Orchestrator, OrchestratorConfig
from .events import MqttConfig, MqttPublisher
from .media.pipeline import PipelineConfig
from .media.transcode import OpusEncoderConfig
from .media.webrtc_leg import WebRtcLegConfig
from .ops.access import load_token
from .ops.api import OpsApi, OpsApiConfig
from .ops.records import OpsSources
from .registrar import Registrar
from .routing import CallLimits, CallLimitsConfig, DialPlan, DialPlanConfig
from .settings import CarrierSimSettings, Settings, TrunkSettings
from .signaling import Signaling
from .store import CallStore, CallStoreError, StoreConfig
from .users import Ha1Cache, UserStore, UserStoreError, ensure_demo_user, sqlite_url
from .web import HttpsSite, start_https

__all__ = [
    "RunningBridge",
    "StartupError",
    "carrier_sim_config",
    "run_carrier_sim_command",
    "serve",
    "start",
    "tls_material",
]

log = logging.getLogger("bridge.app")


class StartupError(Exception):
    """The bridge cannot start (certificates, ports); the message says what to fix."""


@dataclass(slots=True)
class RunningBridge:
    """The listeners of a started bridge."""

    sip_server: SipTlsServer
    gateway: TrunkGateway
    http_runner: web.AppRunner
    https_port: int
    ca_file: Path | None
    orchestrator: Orchestrator
    store: UserStore
    users: Ha1Cache
    refresh_task: asyncio.Task[None]
    carrier_sim: CarrierSimulator | None = None
    demo_password: str | None = None
    publisher: MqttPublisher | None = None
    ops: OpsApi | None = None
    ops_token_file: Path | None = None
    call_store: CallStore | None = None

    @property
    def sip_port(self) -> int:
        """The bound SIP-over-TLS port."""
        return self.sip_server.port

    async def close(self) -> None:
        """Hang up every call, stop accepting, close every connection and wait for them."""
        await self.orchestrator.aclose()
        if self.publisher is not None:
            await self.publisher.aclose()  # after the calls' final updates
        await self.http_runner.cleanup()
        await self.gateway.aclose()
        if self.carrier_sim is not None:
            await self.carrier_sim.aclose()
        if self.call_store is not None:
            await self.call_store.aclose()  # after the calls' final updates
        self.refresh_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.refresh_task
        await self.store.aclose()


async def serve(settings: Settings) -> None:
    """Run the bridge until SIGINT or SIGTERM.

    Raises:
        StartupError: a listener or the certificates could not be set up.
    """
    _configure_logging(settings)
    running = await start(settings)
    log.info(
        "listening: SIP over TLS on %s:%d, HTTPS and WSS on https://%s:%d/ (WebSocket %s)",
        settings.sip.listen_host,
        running.sip_port,
        settings.http.listen_host,
        running.https_port,
        settings.http.websocket_path,
    )
    _print_welcome(settings, running)
    try:
        await _until_signal(asyncio.Event().wait())
    finally:
        log.info("stopping")
        await running.close()


def _print_welcome(settings: Settings, running: RunningBridge) -> None:
    """Tell the person at the console where the dialer is (the demo password once)."""
    url = f"https://{settings.http.listen_host}:{running.https_port}/"
    lines = [f"dialer page: {url}"]
    if running.ca_file is not None and settings.tls.cert_file is None:
        lines.append(f"development CA (trust it in the browser): {running.ca_file}")
    if running.demo_password is not None:
        lines.append(
            f"demo user created: {settings.users.demo_user} / {running.demo_password} "
            f"(owns {settings.users.demo_did}; shown once, change it with "
            f"`pstn-bridge user passwd {settings.users.demo_user}`)"
        )
    if running.ops_token_file is not None:
        lines.append(f"ops API token (bearer): in {running.ops_token_file}")
    print("\n".join(lines), flush=True)  # the console, never the log: it holds a password


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def start(settings: Settings) -> RunningBridge:
    """Start every listener the settings describe.

    Args:
        settings: validated settings.

    Raises:
        StartupError: certificates or ports are unusable.
    """
    var_dir = settings.node.var_dir
    cert, key, ca = tls_material(settings)
    try:
        client_auth = (
            ClientAuth.REQUIRED
            if settings.sip.require_client_cert
            else (ClientAuth.OPTIONAL if ca is not None else ClientAuth.NONE)
        )
        sip_ctx = server_context(
            TlsServerConfig(
                certificate_chain=cert, private_key=key, client_auth=client_auth, client_ca_file=ca
            )
        )
        https_ctx = server_context(
            TlsServerConfig(certificate_chain=cert, private_key=key, alpn_protocols=("http/1.1",))
        )
    except TlsPolicyError as exc:
        raise StartupError(str(exc)) from exc
    publisher = _mqtt_publisher(settings, ca)  # before anything that would need closing
    endpoint_config = SipEndpointConfig(
        max_message_size=settings.sip.max_message_size,
        max_write_buffer=settings.sip.max_connection_buffer,
        keepalive_interval=settings.sip.keepalive_interval or None,
    )
    store, users, demo_password = await _open_users(settings)
    call_store = await _open_call_store(settings)
    loop = asyncio.get_running_loop()
    limits = settings.limits
    auth = BrowserAuth.for_realm(
        settings.sip.realm,
        _digest_secret(var_dir),
        ha1_lookup=users.lookup,
        random_bytes=secrets.token_bytes,
        guard=AuthGuard(
            AuthGuardConfig(
                max_failures=limits.auth_failures_before_block,
                window=limits.auth_failure_window,
                block_time=limits.auth_block_time,
            )
        ),
    )
    signaling = Signaling(
        Registrar(auth),
        clock=loop.time,
        tag_source=lambda: secrets.token_hex(8),
        node_id=settings.node.id,
    )
    gateway = TrunkGateway(
        _trunk_configs(settings, ca),
        route=None,
        endpoint_config=endpoint_config,
        on_status=_log_trunk_status,
    )
    orchestrator = _orchestrator(settings, gateway, auth, users, signaling, loop.time)
    sources = OpsSources(orchestrator, gateway, store=call_store, broker=publisher)
    ops, ops_token_file = _ops_api(settings, sources)
    orchestrator.journal.add_sink(call_store)
    if publisher is not None:
        orchestrator.journal.add_sink(publisher)
    gateway.route = orchestrator.route_inbound
    gateway.on_refusal = orchestrator.inbound_refused
    signaling.orchestrator = orchestrator
    refresh = loop.create_task(users.run_refresh(store, USERS_REFRESH), name="users refresh")
    try:
        sip_server = await gateway.listen(
            settings.sip.listen_host, settings.sip.listen_port, sip_ctx
        )
    except OSError as exc:
        raise StartupError(
            f"cannot listen for SIP on {settings.sip.listen_host}:{settings.sip.listen_port}: "
            f"{exc.strerror or exc}"
        ) from exc
    try:
        http = settings.http
        site = HttpsSite(
            host=http.listen_host,
            port=http.listen_port,
            hsts_max_age=http.hsts_max_age,
            websocket_path=http.websocket_path,
        )
        websocket = SipWebSocketService(signaling.handle, config=endpoint_config)
        ops.sources.sip_server = sip_server
        runner, https_port = await start_https(site, https_ctx, websocket, mounts=(ops.mount,))
    except OSError as exc:
        await gateway.aclose()
        raise StartupError(
            f"cannot listen for HTTPS on {settings.http.listen_host}:{settings.http.listen_port}: "
            f"{exc.strerror or exc}"
        ) from exc
    simulator = await _start_carrier_sim(settings, cert, key, ca)
    gateway.start()
    call_store.start()
    if publisher is not None:
        publisher.start()
    return RunningBridge(
        sip_server,
        gateway,
        runner,
        https_port,
        ca,
        orchestrator,
        store,
        users,
        refresh,
        simulator,
        demo_password,
        publisher=publisher,
        ops=ops,
        ops_token_file=ops_token_file,
        call_store=call_store,
    )


def _ops_api(settings: Settings, sources: OpsSources) -> tuple[OpsApi, Path | None]:
    """The ops API on the journal; its token from ``[ops] api_token`` or the token file
    (returned: its path is shown at start-up, the token never).

    Raises:
        StartupError: the token file cannot be read or created.
    """
    ops = settings.ops
    token_file = None
    if ops.api_token is not None:
        token = ops.api_token.get_secret_value()
    else:
        try:
            token, token_file = load_token(settings.node.var_dir)
        except OSError as exc:
            raise StartupError(f"ops API token: {exc}") from exc
        log.info("ops API bearer token in %s", token_file)
        if token_file.stat().st_mode & 0o077:
            log.warning("%s is readable by other users: chmod 600 it", token_file)
    api = OpsApi(
        OpsApiConfig(
            token=token,
            requests_per_second=ops.requests_per_second,
            burst=ops.burst,
            max_stream_clients=ops.max_stream_clients,
            stream_queue=ops.stream_queue,
        ),
        sources,
    )
    api.attach(sources.orchestrator.journal)
    return api, token_file


USERS_REFRESH = 5.0
"""Seconds between reloads of the user database (``pstn-bridge user add`` takes effect)."""


async def _open_users(settings: Settings) -> tuple[UserStore, Ha1Cache, str | None]:
    url = settings.store.url or sqlite_url(settings.node.var_dir / "bridge.db")
    settings.node.var_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = await UserStore.open(url)
        await store.create_schema()
        demo = settings.users
        password = None
        if demo.demo_user:
            password = await ensure_demo_user(
                store, demo.demo_user, demo.demo_did, settings.sip.realm
            )
        users = Ha1Cache()
        await users.refresh(store)
    except UserStoreError as exc:
        raise StartupError(f"user database: {exc}") from exc
    return store, users, password


async def _open_call_store(settings: Settings) -> CallStore:
    """The CDR store, in the user database unless ``store.url`` names another."""
    var_dir, options = settings.node.var_dir, settings.store
    config = StoreConfig(
        spill_file=options.spill_file or var_dir / "cdr-spill.jsonl",
        queue_size=options.queue_size,
        max_retries=options.max_retries,
        retry_initial=options.retry_initial,
        retry_max=options.retry_max,
    )
    try:
        return await CallStore.open(options.url or sqlite_url(var_dir / "bridge.db"), config)
    except CallStoreError as exc:
        raise StartupError(f"call store: {exc}") from exc


def _orchestrator(
    settings: Settings,
    gateway: TrunkGateway,
    auth: BrowserAuth,
    users: Ha1Cache,
    signaling: Signaling,
    clock: Callable[[], float],
) -> Orchestrator:
    webrtc, plan, limits = settings.webrtc, settings.dialplan, settings.limits
    pipeline = PipelineConfig(
        webrtc=WebRtcLegConfig(
            host_addresses=webrtc.ice_addresses,
            stun_servers=webrtc.stun_servers,
            turn_servers=webrtc.turn_servers,
            turn_username=webrtc.turn_username,
            turn_password=(
                webrtc.turn_password.get_secret_value() if webrtc.turn_password else None
            ),
            max_remote_candidates=webrtc.max_remote_candidates,
            connect_timeout=webrtc.connect_timeout,
        ),
        opus=OpusEncoderConfig(complexity=webrtc.opus_complexity, bitrate=webrtc.opus_bitrate),
        gateway_host=settings.sip.listen_host,
        gateway_port_range=settings.sip.media_port_range,
    )
    trunk = plan.trunk or (settings.trunks[0].name if settings.trunks else "")
    config = OrchestratorConfig(
        trunk=trunk,
        browser=BrowserProfile(
            realm=settings.sip.realm,
            codecs=webrtc.codecs,
            max_remote_candidates=webrtc.max_remote_candidates,
        ),
        pipeline=pipeline,
    )
    return Orchestrator(
        config,
        gateway=gateway,
        auth=auth,
        dialplan=DialPlan(
            DialPlanConfig(
                country_code=plan.country_code,
                national_prefix=plan.national_prefix,
                international_prefix=plan.international_prefix,
                allowed_prefixes=plan.allowed_prefixes,
                blocked_prefixes=plan.blocked_prefixes,
            )
        ),
        limits=CallLimits(
            CallLimitsConfig(
                max_concurrent=limits.max_concurrent_calls_per_user,
                max_per_minute=limits.max_calls_per_minute_per_user,
            )
        ),
        owner_of_did=users.owner_of_did,
        did_of=users.did_of,
        contacts=signaling.contacts,
        clock=clock,
    )


async def _start_carrier_sim(
    settings: Settings, cert: Path, key: Path, ca: Path | None
) -> CarrierSimulator | None:
    if not settings.carrier_sim.enabled:
        return None
    simulator = CarrierSimulator(carrier_sim_config(settings.carrier_sim, cert, key, ca))
    try:
        await simulator.start()
    except (OSError, ValueError, TlsPolicyError) as exc:
        raise StartupError(f"cannot start the carrier simulator: {exc}") from exc
    log.info(
        "carrier simulator (%s) on %s:%d",
        settings.carrier_sim.mode,
        settings.carrier_sim.listen_host,
        simulator.port,
    )
    return simulator


def carrier_sim_config(
    sim: CarrierSimSettings, cert: Path, key: Path, ca: Path | None
) -> CarrierSimConfig:
    """Map the simulator's settings to its own configuration object.

    Raises:
        ValueError: an option the simulator refuses.
    """
    return CarrierSimConfig(
        listen_host=sim.listen_host,
        listen_port=sim.listen_port,
        certificate=cert,
        private_key=key,
        ca_file=ca,
        mode=SimMode(sim.mode),
        play_file=sim.play_file,
        tone_hz=sim.tone_hz,
        announcement=sim.announcement,
        early_media=sim.early_media,
        ring_time=sim.ring_time,
        no_answer_timeout=sim.no_answer_timeout,
        record_dir=sim.record_dir,
        dtmf_to_send=sim.dtmf_to_send,
        dtmf_delay=sim.dtmf_delay,
        hangup_after=sim.hangup_after,
        media_host=sim.media_host,
        media_port_range=sim.media_port_range,
    )


def _trunk_configs(settings: Settings, dev_ca: Path | None) -> list[TrunkConfig]:
    """Map the trunk settings to the gateway's own configuration objects.

    A trunk without ``ca_file`` trusts the development CA when the bridge generated one.

    Raises:
        StartupError: a trunk's options are inconsistent (the message names the trunk).
    """
    generated = settings.tls.cert_file is None
    configs = []
    for index, trunk in enumerate(settings.trunks):
        try:
            configs.append(_trunk_config(trunk, dev_ca if generated else None))
        except ValueError as exc:
            raise StartupError(f"option trunks.{index} ({trunk.name}): {exc}") from None
    return configs


def _trunk_config(trunk: TrunkSettings, dev_ca: Path | None) -> TrunkConfig:
    fields = trunk.model_dump(exclude={"caller_id", "password", "registration", "options_interval"})
    return TrunkConfig(
        **fields | {"ca_file": trunk.ca_file or dev_ca},
        password=trunk.password.get_secret_value() if trunk.password else None,
        register=trunk.registration,
        caller_id=CallerIdRules(**trunk.caller_id.model_dump()),
        options_interval=trunk.options_interval or None,
    )


def _mqtt_publisher(settings: Settings, dev_ca: Path | None) -> MqttPublisher | None:
    """The MQTT publisher of ``[events]`` (None without a broker); trusts the development CA
    when the broker has no ``ca_file`` and the bridge generated its certificates.

    Raises:
        StartupError: an option or a TLS file is unusable (the message names it).
    """
    events = settings.events
    if events.broker_host is None:
        return None
    generated = settings.tls.cert_file is None
    try:
        tls = TlsClientConfig(
            ca_file=events.ca_file or (dev_ca if generated else None),
            server_hostname=events.broker_host,
            certificate_chain=events.client_cert_file,
            private_key=events.client_key_file,
        )
        fields = events.model_dump(exclude={"ca_file", "client_cert_file", "client_key_file"})
        password = events.password.get_secret_value() if events.password else None
        config = MqttConfig(**fields | {"password": password, "tls": tls})
        return MqttPublisher(config, node_id=settings.node.id)
    except (TlsPolicyError, ValueError) as exc:
        raise StartupError(f"option events: {exc}") from None


def _log_trunk_status(event: TrunkStatusChanged) -> None:
    log.info("trunk %s is %s", event.trunk, event.status.value)


def tls_material(settings: Settings) -> tuple[Path, Path, Path | None]:
    """Certificate chain, key and CA file of the bridge (a generated dev PKI when unset).

    Raises:
        StartupError: only one of cert_file/key_file is set, or the dev PKI cannot be written.
    """
    tls = settings.tls
    if tls.cert_file is not None and tls.key_file is not None:
        return tls.cert_file, tls.key_file, tls.ca_file
    if tls.cert_file is not None or tls.key_file is not None:
        raise StartupError("options tls.cert_file and tls.key_file must be set together")
    try:
        pki = ensure_dev_pki(settings.node.var_dir / "tls")
    except OSError as exc:
        raise StartupError(f"cannot write development certificates: {exc}") from exc
    log.warning("using the development CA in %s: not for production", pki.ca_certificate.parent)
    return pki.server_certificate, pki.server_key, tls.ca_file or pki.ca_certificate


def _digest_secret(var_dir: Path) -> bytes:
    """The nonce MAC key, kept across restarts so outstanding nonces stay valid."""
    path = var_dir / "digest.secret"
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundSimCall:
    """A call the stand-alone simulator places (``pstn-bridge carrier-sim --call``)."""

    number: str
    host: str
    port: int
    server_name: str | None = None
    caller: str | None = None


async def run_carrier_sim_command(settings: Settings, place: OutboundSimCall | None) -> int:
    """Run ``pstn-bridge carrier-sim``: serve until SIGINT/SIGTERM, or place one call.

    Returns:
        the exit status: 0, or 1 when the placed call was not answered.

    Raises:
        StartupError: certificates, WAV or listener cannot be used.
    """
    _configure_logging(settings)
    cert, key, ca = tls_material(settings)
    try:
        config = carrier_sim_config(settings.carrier_sim, cert, key, ca)
        if place is None:
            await _until_signal(run_carrier_sim(config))
            return 0
        async with CarrierSimulator(config) as simulator:
            return await _place_call(simulator, place)
    except (WavFormatError, TlsPolicyError, ValueError, OSError) as exc:
        raise StartupError(f"carrier simulator: {exc}") from exc


async def _place_call(simulator: CarrierSimulator, place: OutboundSimCall) -> int:
    try:
        call = await simulator.call(
            place.number,
            place.host,
            place.port,
            server_name=place.server_name,
            caller=place.caller,
        )
    except CallFailedError as exc:
        print(f"call to {place.number} failed: {exc.failure.value} ({exc.status_code})")
        return 1
    print(f"call to {place.number} answered (SRTP {call.suite}); hang up with Ctrl-C")
    await _until_signal(call.wait_ended())
    if call.end_reason is None:
        await call.hangup()
    print(f"call ended: {call.end_reason}; DTMF received: {''.join(call.digits) or '-'}")
    return 0


async def _until_signal(work: Coroutine[Any, Any, object]) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives (then cancel it)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
