"""The browser leg's transport: aiortc for ICE, DTLS and SRTP keying, nothing else.

Theory of operation
-------------------
aiortc's audio path (RTCPeerConnection, RTCRtpSender/Receiver) costs 30-55 ms CPU per
leg-second and drops payload types it does not know, telephone-event included (DESIGN 9,
PEERS 7.5). So only its ORTC objects are used and our pipeline gets plaintext RTP:

1. :meth:`WebRtcLeg.create` makes a certificate, an ICE gatherer with exactly the
   configured STUN/TURN servers (never ``None``, which means Google's STUN server), the
   ICE and DTLS transports, and gathers host candidates on exactly
   :attr:`WebRtcLegConfig.host_addresses` by calling the aioice connection's own
   ``get_component_candidates`` (``gather_candidates`` would ask the process-wide
   ``get_host_addresses``, which skips 127.0.0.1): no global patch.
2. :meth:`WebRtcLeg.connect` converts the negotiated :class:`~sip_gateway.sdp.MediaConfig`,
   runs ICE then DTLS under one deadline, checks the peer's certificate against the
   signaled fingerprints itself and returns the observed :class:`DtlsFacts`.
3. Receive: the nominated pair's socket protocol gets an instance-level
   ``datagram_received`` that unprotects SRTP/SRTCP (first byte 128..191, RFC 7983) with
   the DTLS transport's rx session and calls ``on_rtp``/``on_rtcp`` synchronously: no
   STUN parse attempt, no queue, no task wake-up per packet. STUN and DTLS go on to
   aioice and aiortc as before. SRTP that still takes aiortc's pump (before the hook, or
   on another local socket) reaches ``RTCDtlsTransport._handle_rtp_data`` /
   ``_handle_rtcp_data``, replaced on the instance to feed the same callbacks.
4. Send: :meth:`WebRtcLeg.send_rtp` protects with the tx session and calls ``sendto`` on
   (a dup of) the nominated pair's socket: what aioice's ``async Connection.send`` does
   (``StunProtocol.send_data``), minus the coroutine and the transport's Python method.

States: ``new`` -> ``connecting`` -> ``connected`` | ``failed``; ``closed`` after
:meth:`WebRtcLeg.close`. Losing ICE (consent expiry) or DTLS (the peer's close_notify
included) after ``connected`` reads as ``failed``; signaling says whether the call ended.

Private API (aiortc 1.16.0, aioice 0.13.0): aioice ``Connection.get_component_candidates``,
``_local_candidates[_start|_end]``, ``_nominated`` (``CandidatePair.protocol`` and
``remote_addr``), ``StunProtocol.datagram_received`` (replaced per instance) and
``.transport``; aiortc ``RTCIceGatherer._connection``, ``RTCDtlsTransport._set_role``,
``_role``, ``_ssl``, ``_rx_srtp``, ``_tx_srtp``, ``_task``, ``_handle_rtp_data``,
``_handle_rtcp_data``. The project's only module importing aiortc or aioice (and the
only camelCase). Nothing here logs payloads, keys or the ICE password.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from aioice import Candidate as AioiceCandidate
from aiortc import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCIceCandidate,
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceServer,
    RTCIceTransport,
)
from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS
from aiortc.rtcicetransport import connection_kwargs
from cryptography.hazmat.primitives.serialization import Encoding

from bridge.media._srtp_path import PacketCallback, SrtpPath, WebRtcLegStats
from sip_gateway.sdp import (
    Candidate,
    DtlsCrypto,
    Fingerprint,
    IceParameters,
    MediaConfig,
    RemoteIce,
    SetupRole,
)

__all__ = [
    "DtlsFacts",
    "PacketCallback",
    "WebRtcLeg",
    "WebRtcLegConfig",
    "WebRtcLegError",
    "WebRtcLegStats",
    "open_ice_sockets",
]

logger = logging.getLogger("bridge.media.webrtc_leg")


_COMPONENT = 1  # RTP; rtcp-mux is required by WebRTC (RFC 8829), so RTCP shares it
_MDNS_SUFFIX = ".local"


class WebRtcLegError(Exception):
    """The WebRTC leg could not be set up or was misused; never carries keys or passwords.

    Attributes:
        reason: a short code (see :meth:`WebRtcLeg.connect`; ``no-candidates`` from create).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcLegConfig:
    """ICE and DTLS settings of the browser leg (built by ``bridge.app`` from settings).

    Attributes:
        host_addresses: IP addresses to gather host candidates on, one UDP socket each,
            in this order (the first is the default ``c=`` address). Loopback is allowed;
            unspecified addresses (0.0.0.0, ::) are not.
        stun_servers: ``stun:host[:port]`` URIs; at most one (aioice uses one). Empty by
            default: no public STUN server is ever contacted unless configured.
        turn_servers: ``turn:``/``turns:`` URIs; at most one (aioice uses one).
        turn_username: the TURN username (required with a TURN server).
        turn_password: the TURN password (a credential: never in repr).
        max_remote_candidates: more candidates than this in the peer's SDP is refused
            (each one costs connectivity checks).
        connect_timeout: seconds for ICE plus the DTLS handshake.
    """

    host_addresses: tuple[str, ...] = ("127.0.0.1",)
    stun_servers: tuple[str, ...] = ()
    turn_servers: tuple[str, ...] = ()
    turn_username: str | None = None
    turn_password: str | None = field(default=None, repr=False)
    max_remote_candidates: int = 32
    connect_timeout: float = 15.0

    def __post_init__(self) -> None:
        if not self.host_addresses:
            raise ValueError("host_addresses must name at least one address")
        for address in self.host_addresses:
            if ipaddress.ip_address(address).is_unspecified:
                raise ValueError(f"host address {address} is unspecified: name the interface")
        if len(self.stun_servers) > 1 or len(self.turn_servers) > 1:
            raise ValueError("at most one STUN and one TURN server (aioice uses one of each)")
        if self.turn_servers and (self.turn_username is None or self.turn_password is None):
            raise ValueError("a TURN server needs turn_username and turn_password")
        # aiortc silently skips URIs it cannot use (stuns:, turn:...?transport=tls): refuse them
        usable = connection_kwargs(ice_servers(self))  # ValueError when malformed
        if self.stun_servers and "stun_server" not in usable:
            raise ValueError("the STUN server must be a stun: URI")
        if self.turn_servers and "turn_server" not in usable:
            raise ValueError("the TURN server must be turn: (udp or tcp) or turns: (tcp)")
        if self.max_remote_candidates < 1:
            raise ValueError("max_remote_candidates must be at least 1")
        if not self.connect_timeout > 0:
            raise ValueError("connect_timeout must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class DtlsFacts:
    """What the live ICE/DTLS session negotiated; None where it was not observed.

    Attributes:
        dtls_version: e.g. ``DTLSv1.2``.
        cipher: the DTLS cipher suite, OpenSSL's name (``ECDHE-ECDSA-AES128-GCM-SHA256``).
        srtp_profile: the DTLS-SRTP profile (``SRTP_AES128_CM_SHA1_80``,
            ``SRTP_AEAD_AES_128_GCM``, ``SRTP_AEAD_AES_256_GCM``).
        role: our DTLS role, ``client`` or ``server``.
        ice_role: our ICE role, ``controlling`` or ``controlled``.
        remote_fingerprint: ``sha-256 AB:CD:...`` (the hash of the first signaled
            fingerprint) of the certificate the peer actually presented.
        fingerprint_matches_signaling: every signaled ``a=fingerprint`` whose hash we can
            compute matches that certificate.
        local_candidate: our side of the selected pair, ``127.0.0.1:50000 udp host``.
        remote_candidate: the peer's side of the selected pair.
    """

    dtls_version: str | None = None
    cipher: str | None = None
    srtp_profile: str | None = None
    role: str | None = None
    ice_role: str | None = None
    remote_fingerprint: str | None = None
    fingerprint_matches_signaling: bool | None = None
    local_candidate: str | None = None
    remote_candidate: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Remote:
    """The peer's side of a MediaConfig, in aiortc's types."""

    ice: RTCIceParameters
    candidates: tuple[RTCIceCandidate, ...]
    fingerprints: tuple[Fingerprint, ...]
    dtls_role: str


_LEGS: weakref.WeakSet[WebRtcLeg] = weakref.WeakSet()


def open_ice_sockets() -> int:
    """UDP sockets the process's WebRTC legs' ICE agents hold now (for ``/metrics``)."""
    return sum(len(leg._gatherer._connection._protocols) for leg in list(_LEGS))


class WebRtcLeg:
    """ICE + DTLS-SRTP transport of one browser leg; build it with :meth:`create`."""

    def __init__(
        self,
        config: WebRtcLegConfig,
        *,
        on_rtp: PacketCallback,
        on_rtcp: PacketCallback | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        """Build the aiortc objects; nothing is bound yet (use :meth:`create`)."""
        self._config = config
        self._on_state = on_state
        self._state = "new"
        self._facts = DtlsFacts()
        self._path = SrtpPath(on_rtp, on_rtcp or (lambda packet: None))
        self._certificate = RTCCertificate.generateCertificate()
        self._gatherer = RTCIceGatherer(iceServers=ice_servers(config))
        self._ice = RTCIceTransport(self._gatherer)
        self._dtls = RTCDtlsTransport(self._ice, [self._certificate])
        _LEGS.add(self)
        self._dtls._handle_rtp_data = self._path.handle_rtp_data  # type: ignore[method-assign]
        self._dtls._handle_rtcp_data = self._path.handle_rtcp_data  # type: ignore[method-assign]
        self._establishing: asyncio.Task[DtlsFacts] | None = None
        self._send_socket: socket.socket | None = None  # ours: a dup of the nominated one
        self._closing = False

    @classmethod
    async def create(
        cls,
        config: WebRtcLegConfig,
        *,
        on_rtp: PacketCallback,
        on_rtcp: PacketCallback | None = None,
        on_state: Callable[[str], None] | None = None,
        controlling: bool = False,
    ) -> WebRtcLeg:
        """Make a certificate and gather candidates (and STUN/TURN ones when configured).

        Args:
            config: ICE/DTLS settings.
            on_rtp: gets every decrypted RTP packet, any payload type.
            on_rtcp: gets every decrypted RTCP compound packet.
            on_state: gets each new :attr:`state`.
            controlling: our expected ICE role (we offer), set now so that the peer's
                checks arriving before :meth:`connect` meet the right role and cause no
                role-conflict round trip (RFC 8445 7.3.1.1); ``connect`` has the last word.

        Raises:
            WebRtcLegError: ``no-candidates``: no configured address could be bound.
        """
        leg = cls(config, on_rtp=on_rtp, on_rtcp=on_rtcp, on_state=on_state)
        leg._gatherer._connection.ice_controlling = controlling
        try:
            await leg._gather()
        except BaseException:
            await leg.close()
            raise
        return leg

    async def _gather(self) -> None:
        connection = self._gatherer._connection
        # gather_candidates() would ask the process-wide get_host_addresses(), which
        # skips 127.0.0.1: gather on exactly our addresses, on this connection only.
        found = await connection.get_component_candidates(
            component=_COMPONENT, addresses=list(self._config.host_addresses)
        )
        connection._local_candidates = list(found)
        connection._local_candidates_start = True
        connection._local_candidates_end = True
        if not any(c.type == "host" for c in found):
            raise WebRtcLegError("no-candidates", "no host address could be bound")

    @property
    def local_ice(self) -> IceParameters:
        """Our ICE credentials and all gathered candidates (for our SDP)."""
        connection = self._gatherer._connection
        return IceParameters(
            ufrag=connection.local_username,
            pwd=connection.local_password,
            candidates=tuple(_to_sdp_candidate(c) for c in connection.local_candidates),
        )

    @property
    def fingerprints(self) -> tuple[Fingerprint, ...]:
        """Our certificate's fingerprints, sha-256 first."""
        return tuple(
            Fingerprint(algorithm=f.algorithm, value=f.value)
            for f in self._certificate.getFingerprints()
        )

    @property
    def default_address(self) -> tuple[str, int]:
        """The first host candidate's address: the SDP's ``c=`` address and ``m=`` port.

        Raises:
            WebRtcLegError: ``invalid-state``: the leg is closed.
        """
        for candidate in self._gatherer._connection.local_candidates:
            if candidate.type == "host":
                return candidate.host, candidate.port
        raise WebRtcLegError("invalid-state", "the leg has no candidates (closed)")

    @property
    def state(self) -> str:
        """``new``, ``connecting``, ``connected``, ``failed`` or ``closed``."""
        return self._state

    def facts(self) -> DtlsFacts:
        """What was observed on the live session so far (all None before DTLS)."""
        return self._facts

    def stats(self) -> WebRtcLegStats:
        """A snapshot of the packet counters."""
        return replace(self._path.stats)

    async def connect(self, config: MediaConfig, *, controlling: bool) -> DtlsFacts:
        """Run ICE, then the DTLS handshake, against the peer of ``config``.

        Args:
            config: the negotiated config: its ``remote_ice`` and ``DtlsCrypto``
                (``local_setup`` ``active``: we are the DTLS client; ``passive``: server).
            controlling: our ICE role (the offerer controls, unless it is ICE-lite;
                against an ICE-lite peer we always control).

        Returns:
            The observed facts; the leg is ``connected``.

        Raises:
            WebRtcLegError: ``invalid-state``, ``invalid-config`` (not DTLS, no ICE,
                unresolved ``a=setup``, no sha-256/384/512 fingerprint) and
                ``too-many-candidates`` leave the leg ``new``; ``ice-failed``,
                ``dtls-failed``, ``fingerprint-mismatch``, ``timeout`` and ``closed``
                (by :meth:`close`) leave it ``failed``/``closed`` with sockets released.
        """
        if self._state != "new":
            raise WebRtcLegError("invalid-state", f"connect() on a {self._state} leg")
        remote = self._remote(config)
        self._set_state("connecting")
        task = asyncio.ensure_future(self._establish(remote, controlling))
        self._establishing = task
        try:
            async with asyncio.timeout(self._config.connect_timeout):
                facts = await task
        except TimeoutError:
            error = WebRtcLegError("timeout", f"not connected in {self._config.connect_timeout} s")
        except WebRtcLegError as exc:
            error = exc
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                await self._fail()
                raise  # our caller cancelled us
            # close() cancelled the attempt and tears the transports down itself
            raise WebRtcLegError("closed", "the leg was closed while connecting") from None
        else:
            self._set_state("connected")
            logger.info("WebRTC leg connected: %s", facts)
            return facts
        finally:
            self._establishing = None
        await self._fail()
        raise error

    def _remote(self, config: MediaConfig) -> _Remote:
        crypto, ice = config.crypto, config.remote_ice
        if not isinstance(crypto, DtlsCrypto):
            raise WebRtcLegError("invalid-config", "the WebRTC leg needs a DTLS-SRTP config")
        if ice is None:
            raise WebRtcLegError("invalid-config", "the peer offered no ICE credentials")
        roles = {SetupRole.ACTIVE: "client", SetupRole.PASSIVE: "server"}
        if crypto.local_setup not in roles:
            raise WebRtcLegError("invalid-config", f"a=setup:{crypto.local_setup} is unresolved")
        if len(ice.candidates) > self._config.max_remote_candidates:
            raise WebRtcLegError(
                "too-many-candidates",
                f"{len(ice.candidates)} remote candidates (at most "
                f"{self._config.max_remote_candidates})",
            )
        if not any(
            f.algorithm.lower() in X509_DIGEST_ALGORITHMS for f in crypto.remote_fingerprints
        ):
            raise WebRtcLegError("invalid-config", "no sha-256/384/512 remote fingerprint")
        return _Remote(
            ice=RTCIceParameters(usernameFragment=ice.ufrag, password=ice.pwd, iceLite=ice.lite),
            candidates=_usable_candidates(ice),
            fingerprints=crypto.remote_fingerprints,
            dtls_role=roles[crypto.local_setup],
        )

    async def _establish(self, remote: _Remote, controlling: bool) -> DtlsFacts:
        self._gatherer._connection.ice_controlling = controlling or remote.ice.iceLite
        for candidate in remote.candidates:
            await self._ice.addRemoteCandidate(candidate)
        if remote.candidates:
            # With no usable candidate (all mDNS, say) end-of-candidates would make aioice
            # fail at once; leave it open so the peer's checks teach us a peer-reflexive one.
            await self._ice.addRemoteCandidate(None)
        await self._ice.start(remote.ice)
        if self._ice.state != "completed":
            raise WebRtcLegError("ice-failed", "no candidate pair worked")
        self._dtls._set_role(remote.dtls_role)
        checkable = [
            RTCDtlsFingerprint(algorithm=f.algorithm.lower(), value=f.value)
            for f in remote.fingerprints
            if f.algorithm.lower() in X509_DIGEST_ALGORITHMS
        ]
        await self._dtls.start(RTCDtlsParameters(fingerprints=checkable))
        self._facts = facts = self._observe(remote.fingerprints)
        if facts.fingerprint_matches_signaling is False:
            raise WebRtcLegError(
                "fingerprint-mismatch", "the DTLS certificate is not the signaled one"
            )
        if self._dtls.state != "connected" or self._dtls._rx_srtp is None:
            raise WebRtcLegError("dtls-failed", "the DTLS handshake failed")
        self._start_media()
        return facts

    def _observe(self, signaled: tuple[Fingerprint, ...]) -> DtlsFacts:
        """Read the facts of the session, whatever state the handshake ended in."""
        ssl = self._dtls._ssl
        pair = self._gatherer._connection._nominated.get(_COMPONENT)
        facts = DtlsFacts(
            role=self._dtls._role,
            ice_role=self._ice.role,
            local_candidate=_describe(pair.local_candidate) if pair else None,
            remote_candidate=_describe(pair.remote_candidate) if pair else None,
        )
        if ssl is None:
            return facts
        certificate = ssl.get_peer_certificate(as_cryptography=True)
        if certificate is not None:
            shown, matches = _check_fingerprints(certificate.public_bytes(Encoding.DER), signaled)
            facts = replace(facts, remote_fingerprint=shown, fingerprint_matches_signaling=matches)
        profile = ssl.get_selected_srtp_profile()
        return replace(
            facts,
            dtls_version=ssl.get_protocol_version_name() if self._dtls.encrypted else None,
            cipher=ssl.get_cipher_name(),
            srtp_profile=profile.decode("ascii") if profile else None,
        )

    def _start_media(self) -> None:
        """Hook the receive fast path and cache the send path on the nominated pair."""
        pair = self._gatherer._connection._nominated[_COMPONENT]
        protocol = pair.protocol
        # the socket's own sendto, on a dup of it (closed by _stop_sending): no asyncio
        # transport method per packet; a refused send raises and is counted by the path
        self._send_socket = protocol.transport.get_extra_info("socket").dup()
        self._path.start(
            rx=self._dtls._rx_srtp,
            tx=self._dtls._tx_srtp,
            sendto=self._send_socket.sendto,
            remote=pair.remote_addr,
            fallback=protocol.datagram_received,
        )
        protocol.datagram_received = self._path.datagram_received  # type: ignore[method-assign, assignment]
        self._dtls.on("statechange", self._transport_changed)
        self._ice.on("statechange", self._transport_changed)

    def _transport_changed(self) -> None:
        lost = self._dtls.state in ("closed", "failed") or self._ice.state in ("closed", "failed")
        if lost and not self._closing and self._state == "connected":
            logger.info("WebRTC leg lost (ICE %s, DTLS %s)", self._ice.state, self._dtls.state)
            self._stop_sending()
            self._set_state("failed")

    def _stop_sending(self) -> None:
        self._path.stop_sending()
        if self._send_socket is not None:
            self._send_socket.close()
            self._send_socket = None

    @property
    def on_rtp(self) -> PacketCallback:
        """Gets every decrypted RTP packet; replaceable (the pipeline hands the packets of
        the browser leg it chose straight to itself)."""
        return self._path.on_rtp

    @on_rtp.setter
    def on_rtp(self, callback: PacketCallback) -> None:
        self._path.on_rtp = callback

    @property
    def rtp_sender(self) -> Callable[[bytes], None]:
        """:meth:`send_rtp` itself, one call less per packet (for the media pipeline)."""
        return self._path.send_rtp

    def send_rtp(self, packet: bytes) -> None:
        """Protect one plaintext RTP packet and send it; counted and dropped unless connected.

        A plain call (protect + ``sendto`` on the nominated socket), no task per packet.
        """
        self._path.send_rtp(packet)

    def send_rtcp(self, packet: bytes) -> None:
        """Protect one plaintext RTCP compound packet and send it (as :meth:`send_rtp`)."""
        self._path.send_rtcp(packet)

    async def close(self) -> None:
        """Stop ICE and DTLS, close the sockets and end every task; idempotent."""
        if self._closing:
            return
        self._closing = True
        if self._establishing is not None:
            self._establishing.cancel()
        await self._teardown()
        self._set_state("closed")

    async def _fail(self) -> None:
        if self._closing:
            return  # close() owns the teardown
        self._set_state("failed")
        await self._teardown()

    async def _teardown(self) -> None:
        self._stop_sending()
        task = self._establishing
        if task is not None and not task.done():
            await asyncio.wait([task])
        pump = self._dtls._task  # aiortc cancels its data pump but does not await it
        await self._dtls.stop()
        if pump is not None:
            await asyncio.wait([pump])
        self._dtls.remove_all_listeners()
        await self._ice.stop()

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                logger.exception("WebRTC leg on_state callback failed")


def ice_servers(config: WebRtcLegConfig) -> list[RTCIceServer]:
    """The RTCIceServer list for aiortc: exactly the configured servers, possibly none.

    Never None: ``RTCIceGatherer(iceServers=None)`` means Google's public STUN server.
    """
    servers = [RTCIceServer(urls=uri) for uri in config.stun_servers]
    servers += [
        RTCIceServer(urls=uri, username=config.turn_username, credential=config.turn_password)
        for uri in config.turn_servers
    ]
    return servers


def _usable_candidates(ice: RemoteIce) -> tuple[RTCIceCandidate, ...]:
    """UDP candidates with an IP address (aioice has no ICE-TCP; mDNS names are skipped)."""
    usable = []
    for c in ice.candidates:
        if c.transport.lower() != "udp" or c.address.lower().endswith(_MDNS_SUFFIX):
            continue
        usable.append(
            RTCIceCandidate(
                component=c.component,
                foundation=c.foundation,
                ip=c.address,
                port=c.port,
                priority=c.priority,
                protocol=c.transport.lower(),
                type=c.type,
                relatedAddress=c.related_address,
                relatedPort=c.related_port,
            )
        )
    return tuple(usable)


def _to_sdp_candidate(c: AioiceCandidate) -> Candidate:
    return Candidate(
        foundation=c.foundation,
        component=c.component,
        transport=c.transport,
        priority=c.priority,
        address=c.host,
        port=c.port,
        type=c.type,
        related_address=c.related_address,
        related_port=c.related_port,
    )


def _describe(c: AioiceCandidate) -> str:
    host = f"[{c.host}]" if ":" in c.host else c.host
    return f"{host}:{c.port} {c.transport} {c.type}"


def _check_fingerprints(der: bytes, signaled: tuple[Fingerprint, ...]) -> tuple[str, bool]:
    """Return the presented certificate's fingerprint and whether the signaling matches.

    The fingerprint uses the hash of the first signaled one we can compute (sha-256 if
    none); it matches if every signaled fingerprint with a computable hash matches.
    """
    checked: list[bool] = []
    first: Fingerprint | None = None
    for expected in signaled:
        try:
            actual = Fingerprint.of_certificate(der, expected.algorithm)
        except ValueError:
            continue  # a hash hashlib lacks here (md5, md2): no verdict either way
        first = first or actual
        checked.append(actual.matches(expected))
    shown = first or Fingerprint.of_certificate(der, "sha-256")
    return str(shown), bool(checked) and all(checked)
