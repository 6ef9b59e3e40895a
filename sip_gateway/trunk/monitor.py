"""Trunk liveness and registration: OPTIONS keep-alive and REGISTER with refresh.

Theory of operation: :class:`OptionsMonitor` sends an out-of-dialog OPTIONS to the
carrier every ``options_interval`` seconds. Any final response but 408 and 503 (a 401 or
405 included: the SBC is alive and talking) counts as success; a time-out, a TLS failure or
408/503 as failure. :class:`LivenessCounter` (sans-IO) turns the outcomes into the trunk's
:class:`TrunkStatus`: UP on the first success, DOWN after ``options_failures`` consecutive
failures; every change is reported as :class:`TrunkStatusChanged`.

:class:`Registration` keeps a REGISTER binding (RFC 3261 section 10) for trunks that ask
for one: same Call-ID for every refresh, CSeq counting up, digest answered once per
challenge, ``423 Interval Too Brief`` honoured, and a refresh after ``register_refresh``
of the granted lifetime (failures retry after ``register_retry``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sip_gateway.aio import SipEndpoint
from sip_gateway.sip.auth import DigestClient
from sip_gateway.sip.errors import RemoteProtocolError, SipError
from sip_gateway.sip.headers import NameAddr
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.uri import SipUri
from sip_gateway.tls import TlsSessionInfo

from .config import TrunkConfig
from .errors import TrunkError
from .leg import answer_challenge
from .outbound import out_of_dialog_request, uri_host

__all__ = [
    "LivenessCounter",
    "OptionsMonitor",
    "Registration",
    "RegistrationChanged",
    "TrunkStatus",
    "TrunkStatusChanged",
]

logger = logging.getLogger("sip_gateway.trunk")

_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


class TrunkStatus(StrEnum):
    """Whether the carrier answers our keep-alives."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkStatusChanged:
    """A trunk went up or down."""

    trunk: str
    status: TrunkStatus
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteRefused:
    """An inbound INVITE refused before any call was made (screening: 488, 484, 422).

    Attributes:
        trunk: the trunk it came in on.
        call_id: its SIP Call-ID.
        caller: the caller's number or name as sent (may be None).
        did: the called number as sent (may be None).
        peer: the peer's ``host:port``.
        tls: the live TLS session of the connection it came on.
        status_code: the status it was refused with.
        policy: the SDP policy that refused it (``plain-rtp``, ``no-crypto`` ...), or None.
        detail: what was wrong (never SDP keys).
    """

    trunk: str
    call_id: str
    caller: str | None
    did: str | None
    peer: str
    tls: TlsSessionInfo | None
    status_code: int
    policy: str | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationChanged:
    """A registration was granted (``expires`` > 0), removed (0) or failed (None)."""

    trunk: str
    expires: int | None
    detail: str


class LivenessCounter:
    """Up/down from keep-alive outcomes (sans-IO).

    Args:
        failures_to_down: consecutive failures that mark the trunk down.
    """

    def __init__(self, failures_to_down: int) -> None:
        self.status = TrunkStatus.UNKNOWN
        self._threshold = failures_to_down
        self._failures = 0

    def record(self, success: bool) -> TrunkStatus | None:
        """Count one outcome; returns the new status when it changed."""
        if success:
            self._failures = 0
            new = TrunkStatus.UP
        else:
            self._failures += 1
            new = TrunkStatus.DOWN if self._failures >= self._threshold else self.status
        if new is self.status:
            return None
        self.status = new
        return new


class MonitorHost(Protocol):
    """What the monitors need from their trunk."""

    config: TrunkConfig

    def token(self) -> str:
        """A fresh random hex token."""

    def contact(self, endpoint: SipEndpoint) -> NameAddr:
        """Our Contact on ``endpoint``."""

    def digest_client(self) -> DigestClient | None:
        """A digest client for the trunk's account, or None."""

    async def connect(self) -> SipEndpoint:
        """The connection to the trunk."""


def _our_aor(config: TrunkConfig) -> NameAddr:
    return NameAddr(uri=SipUri(user=config.username or "pstn-bridge", host=uri_host(config.domain)))


class OptionsMonitor:
    """OPTIONS keep-alive of one trunk (see the module docstring)."""

    def __init__(
        self,
        host: MonitorHost,
        on_change: Callable[[TrunkStatusChanged], None] | None = None,
    ) -> None:
        self.host = host
        self.on_change = on_change
        self._counter = LivenessCounter(host.config.options_failures)

    @property
    def status(self) -> TrunkStatus:
        """The trunk's current status."""
        return self._counter.status

    async def probe(self) -> bool:
        """Send one OPTIONS and record the outcome; True when the carrier answered."""
        config = self.host.config
        detail = ""
        try:
            endpoint = await self.host.connect()
            target = SipUri(
                host=uri_host(config.host), port=config.port, params=(("transport", "tls"),)
            )
            request = out_of_dialog_request(
                endpoint,
                "OPTIONS",
                uri=target,
                call_id=self.host.token(),
                from_addr=_our_aor(config).with_tag(self.host.token()[:12]),
                to=NameAddr(uri=SipUri(host=uri_host(config.host))),
                seq=1,
                contact=self.host.contact(endpoint),
            )
            request.headers.add("Accept", "application/sdp")
            response = await endpoint.request(request, timeout=config.options_timeout)
            success = response.status_code not in (408, 503)
            detail = f"OPTIONS answered {response.status_code}"
        except (SipError, OSError) as exc:
            success, detail = False, f"OPTIONS failed: {exc}"
        self._record(success, detail)
        return success

    def _record(self, success: bool, detail: str) -> None:
        changed = self._counter.record(success)
        if changed is None:
            return
        name = self.host.config.name
        log = logger.info if changed is TrunkStatus.UP else logger.warning
        log("trunk %s is %s: %s", name, changed, detail)
        if self.on_change is not None:
            self.on_change(TrunkStatusChanged(trunk=name, status=changed, detail=detail))

    async def run(self) -> None:
        """Probe forever at the configured interval (cancel the task to stop)."""
        interval = self.host.config.options_interval
        if interval is None:
            return
        while True:
            await self.probe()
            await asyncio.sleep(interval)


class Registration:
    """The REGISTER binding of one trunk (see the module docstring)."""

    def __init__(
        self,
        host: MonitorHost,
        on_change: Callable[[RegistrationChanged], None] | None = None,
    ) -> None:
        self.host = host
        self.on_change = on_change
        self.expires: int | None = None
        """The lifetime the registrar granted last time, None when not registered."""
        self.registrations = 0
        """Successful REGISTER transactions so far (refreshes included)."""
        self._call_id = host.token()
        self._from_tag = host.token()[:12]
        self._seq = 0
        self._auth = host.digest_client()

    async def register(self, expires: int | None = None) -> int:
        """Send REGISTER (with digest if challenged) and return the granted lifetime.

        Args:
            expires: the lifetime to ask for; None uses the configured one, 0 unregisters.

        Raises:
            TrunkError: the registrar refused (its status in ``status_code``), or the trunk
                is unreachable (503) or silent (408).
        """
        config = self.host.config
        wanted = config.register_expires if expires is None else expires
        try:
            endpoint = await self.host.connect()
            response = await self._transact(endpoint, wanted)
        except (SipError, OSError) as exc:
            status = getattr(exc, "status_code", 503)
            self._report(None, f"REGISTER failed: {exc}")
            raise TrunkError(
                f"registration with {config.name} failed: {exc}", status_code=status
            ) from exc
        if response.status_code >= 300:
            detail = f"REGISTER refused: {response.status_code} {response.reason}"
            self._report(None, detail)
            raise TrunkError(f"{config.name}: {detail}", status_code=response.status_code)
        granted = 0 if wanted == 0 else _granted(response, wanted)
        self.expires = granted or None
        self.registrations += 1
        self._report(granted, f"registered for {granted} s" if granted else "unregistered")
        return granted

    async def _transact(self, endpoint: SipEndpoint, expires: int) -> SipResponse:
        registrar = str(SipUri(host=uri_host(self.host.config.domain)))
        extra = self._auth.authorize(method="REGISTER", uri=registrar) if self._auth else []
        for _round in range(3):
            request = self._request(endpoint, expires, extra)
            response = await endpoint.request(request, timeout=self.host.config.options_timeout)
            code = response.status_code
            minimum = _seconds(response.headers.get("Min-Expires"))
            if code == 423 and minimum is not None and minimum > expires:
                expires = minimum
                continue
            credentials = answer_challenge(
                self._auth, request, response, f"trunk {self.host.config.name}"
            )
            if credentials is None:
                return response
            extra = credentials
        return response

    def _request(
        self, endpoint: SipEndpoint, expires: int, extra: list[tuple[str, str]]
    ) -> SipRequest:
        config = self.host.config
        self._seq += 1
        request = out_of_dialog_request(
            endpoint,
            "REGISTER",
            uri=SipUri(host=uri_host(config.domain)),
            from_addr=_our_aor(config).with_tag(self._from_tag),
            to=_our_aor(config),
            call_id=self._call_id,
            seq=self._seq,
            contact=self.host.contact(endpoint),
        )
        request.headers.add("Expires", str(expires))
        for name, value in extra:
            request.headers.add(name, value)
        return request

    def _report(self, expires: int | None, detail: str) -> None:
        name = self.host.config.name
        (logger.info if expires is not None else logger.warning)("trunk %s: %s", name, detail)
        if self.on_change is not None:
            self.on_change(RegistrationChanged(trunk=name, expires=expires, detail=detail))

    async def run(self) -> None:
        """Register and keep refreshing (cancel the task to stop; then :meth:`unregister`)."""
        config = self.host.config
        while True:
            try:
                granted = await self.register()
                delay = max(1.0, granted * config.register_refresh)
            except TrunkError:
                delay = config.register_retry
            await asyncio.sleep(delay)

    async def unregister(self) -> None:
        """Remove the binding (``Expires: 0``); failures are logged, not raised."""
        if self.expires is None:
            return
        try:
            await self.register(0)
        except TrunkError as exc:
            logger.info("trunk %s: unregister failed: %s", self.host.config.name, exc)
        self.expires = None


def _seconds(value: str | None) -> int | None:
    """A delta-seconds value, or None when absent or not ASCII digits."""
    if value is None or _DELTA_SECONDS.fullmatch(value.strip()) is None:
        return None
    return int(value)


def _granted(response: SipResponse, asked: int) -> int:
    """The lifetime a 2xx to REGISTER granted: our Contact's expires, else Expires."""
    try:
        for contact in response.contacts:
            value = _seconds(contact.param("expires"))
            if value is not None:
                return value
    except RemoteProtocolError:
        pass
    value = _seconds(response.headers.get("Expires"))
    return asked if value is None else value
