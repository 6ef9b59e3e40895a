"""Composition root: settings in, running listeners out.

Theory of operation: the only module that imports everything. :func:`start` maps the
validated :class:`~bridge.settings.Settings` to each package's own configuration objects
(TLS contexts, endpoint configs, the digest server, the store, the MQTT publisher, the ops
API), starts the SIP-over-TLS listener and the HTTPS server (dialer and ops pages with
HSTS, SIP over secure WebSocket, the ops API), and returns a :class:`RunningBridge` to stop
them. :func:`serve` runs until SIGINT/SIGTERM. Start-up support shared with the simulator
command lives in :mod:`bridge.launch`, the carrier simulator command in
:mod:`bridge.sim_command`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sip_gateway.aio.admission import ConnectionLimitsConfig
from sip_gateway.aio.endpoint import SipEndpointConfig
from sip_gateway.aio.stream import SipTlsServer
from sip_gateway.aio.websocket import SipWebSocketService
from sip_gateway.carrier_sim import (
    CarrierSimulator,
)
from sip_gateway.certcheck import check_certificate_chain
from sip_gateway.flood import FloodGuard, FloodGuardConfig
from sip_gateway.tls import (
    ClientAuth,
    TlsClientConfig,
    TlsPolicyError,
    TlsServerConfig,
    server_context,
)
from sip_gateway.trunk import (
    CallerIdRules,
    TrunkConfig,
    TrunkGateway,
    TrunkStatusChanged,
)

from .auth import AuthGuard, AuthGuardConfig, BrowserAuth
from .call.browser import BrowserProfile
from .call.orchestrator import Orchestrator, OrchestratorConfig
from .dbtls import store_tls_config
from .events import MqttConfig, MqttPublisher
from .http_limits import GuardedSite, HttpLimits
from .launch import (
    StartupError,
    configure_logging,
    digest_secret,
    run_until_signal,
    tls_material,
)
from .media.pipeline import PipelineConfig
from .media.plane import MediaPlane, MediaPlaneConfig, worker_count
from .media.transcode import OpusEncoderConfig
from .media.webrtc_leg import WebRtcLegConfig
from .ops.access import load_token
from .ops.api import OpsApi, OpsApiConfig
from .ops.records import OpsSources
from .registrar import Registrar
from .routing import CallLimits, CallLimitsConfig, DialPlan, DialPlanConfig, TrunkChannels
from .settings import Settings, TrunkSettings, WebRtcSettings
from .signaling import Signaling
from .sim_command import (
    OutboundSimCall,
    carrier_sim_config,
    run_carrier_sim_command,
    start_carrier_sim,
)
from .store import CallStore, CallStoreError, StoreConfig
from .users import Ha1Cache, UserStore, UserStoreError, ensure_demo_user, sqlite_url
from .web import HttpsSite, start_https

__all__ = [
    "OutboundSimCall",
    "RunningBridge",
    "StartupError",
    "carrier_sim_config",
    "run_carrier_sim_command",
    "serve",
    "start",
    "tls_material",
]

log = logging.getLogger("bridge.app")


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
    plane: MediaPlane | None = None

    @property
    def sip_port(self) -> int:
        """The bound SIP-over-TLS port."""
        return self.sip_server.port

    async def close(self) -> None:
        """Hang up every call, stop accepting, close every connection and wait for them."""
        await self.orchestrator.aclose()
        if self.plane is not None:
            await self.plane.aclose()  # after the calls closed their media
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
    configure_logging(settings)
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
        await run_until_signal(asyncio.Event().wait())
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
        check_certificate_chain(cert, key)  # expired, not yet valid, weak, mismatched
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
        handshake_timeout=settings.sip.handshake_timeout,
        message_timeout=settings.sip.message_timeout,
    )
    store, users, demo_password = await _open_users(settings)
    call_store = await _open_call_store(settings)
    loop = asyncio.get_running_loop()
    limits = settings.limits
    auth = BrowserAuth.for_realm(
        settings.sip.realm,
        digest_secret(var_dir),
        ha1_lookup=users.lookup,
        random_bytes=secrets.token_bytes,
        guard=AuthGuard(
            AuthGuardConfig(
                max_failures=limits.auth_failures_before_block,
                window=limits.auth_failure_window,
                block_time=limits.auth_block_time,
                delay_step=limits.auth_delay_step,
                max_delay=max(limits.auth_max_delay, limits.auth_delay_step),
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
    signaling.flood = FloodGuard(
        FloodGuardConfig(rate=limits.browser_request_rate, burst=limits.browser_request_burst)
    )
    gateway.flood = FloodGuard(
        FloodGuardConfig(rate=limits.carrier_request_rate, burst=limits.carrier_request_burst)
    )
    sources.browser_flood, sources.browser_delays = signaling.flood, signaling.delays
    refresh = loop.create_task(users.run_refresh(store, USERS_REFRESH), name="users refresh")
    try:
        sip_server = await gateway.listen(
            settings.sip.listen_host,
            settings.sip.listen_port,
            sip_ctx,
            limits=ConnectionLimitsConfig(
                settings.sip.max_connections, settings.sip.max_connections_per_source
            ),
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
        websocket = SipWebSocketService(
            signaling.handle,
            config=endpoint_config,
            limits=ConnectionLimitsConfig(http.max_websockets, http.max_websockets_per_source),
        )
        ops.sources.sip_server, ops.sources.websocket = sip_server, websocket
        http_limits = HttpLimits(
            ConnectionLimitsConfig(http.max_connections, http.max_connections_per_source),
            handshake_timeout=http.handshake_timeout,
        )
        runner, https_port = await start_https(
            site, https_ctx, websocket, mounts=(ops.mount,), limits=http_limits
        )
        ops.sources.https_limits = next(
            (s.limits for s in runner.sites if isinstance(s, GuardedSite)), None
        )
    except OSError as exc:
        await gateway.aclose()
        raise StartupError(
            f"cannot listen for HTTPS on {settings.http.listen_host}:{settings.http.listen_port}: "
            f"{exc.strerror or exc}"
        ) from exc
    simulator = await start_carrier_sim(settings, cert, key, ca)
    plane = await _media_plane(settings, orchestrator)
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
        plane=plane,
    )


async def _media_plane(settings: Settings, orchestrator: Orchestrator) -> MediaPlane | None:
    """Start the media worker processes (None with ``[media] workers = 0``).

    Raises:
        StartupError: a worker process could not be started.
    """
    workers = worker_count(settings.media.workers)
    if workers == 0:
        return None
    plane = MediaPlane(
        MediaPlaneConfig(
            workers=workers, pipeline=orchestrator.config.pipeline, log_level=settings.log.level
        )
    )
    try:
        await plane.start()
    except OSError as exc:
        await plane.aclose()
        raise StartupError(f"cannot start the media workers: {exc}") from exc
    orchestrator.plane = plane
    return plane


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
        store = await UserStore.open(
            url, tls=store_tls_config(settings.store.tls, settings.store.ca_file)
        )
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
        return await CallStore.open(
            options.url or sqlite_url(var_dir / "bridge.db"),
            config,
            tls=store_tls_config(options.tls, options.ca_file),
        )
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
        opus=_opus_encoder_config(webrtc),
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
        media_timeout=settings.sip.media_timeout,
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
        channels=TrunkChannels({t.name: t.max_channels for t in settings.trunks}),
    )


def _opus_encoder_config(webrtc: WebRtcSettings) -> OpusEncoderConfig:
    """The ``[webrtc] opus_*`` options as the Opus encoder's configuration."""
    return OpusEncoderConfig(
        complexity=webrtc.opus_complexity,
        bitrate=webrtc.opus_bitrate,
        constant_bitrate=webrtc.opus_constant_bitrate,
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
    fields = trunk.model_dump(
        exclude={"caller_id", "password", "registration", "options_interval", "max_channels"}
    )
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
