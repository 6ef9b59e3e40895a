"""The WebRTC leg's per-packet path: SRTP around plaintext callbacks, all synchronous.

Theory of operation: :class:`SrtpPath` is what :mod:`bridge.media.webrtc_leg` plugs into
aiortc's transports once DTLS has keyed SRTP. It holds the two libsrtp sessions aiortc
derived, the callbacks of the leg's owner and the nominated socket's ``sendto``:

* :meth:`SrtpPath.datagram_received` takes every datagram of the nominated ICE socket:
  SRTP/SRTCP (first byte 128..191, RFC 7983; RTCP told apart by RFC 5761's packet-type
  range) is unprotected and handed over; STUN and DTLS go to the ``fallback`` (aioice's
  own handler); an empty datagram is counted and dropped.
* :meth:`SrtpPath.handle_rtp_data` / :meth:`SrtpPath.handle_rtcp_data` take what aiortc's
  own pump already unprotected, so that path feeds the same callbacks.
* :meth:`SrtpPath.send_rtp` / :meth:`SrtpPath.send_rtcp` protect and send; without a
  started path they count and drop.

No asyncio objects, no aiortc or aioice imports; callbacks must not block. A callback
that raises is counted and logged once; the media goes on.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pylibsrtp

from sip_gateway.media.srtp import srtp_call

__all__ = ["PacketCallback", "SrtpPath", "WebRtcLegStats", "started_srtp_paths"]

logger = logging.getLogger("bridge.media.webrtc_leg")

PacketCallback = Callable[[bytes], None]
"""Called with one decrypted RTP (or RTCP) packet, synchronously from the socket callback."""
Address = tuple[str, int]


@dataclass(slots=True, kw_only=True)
class WebRtcLegStats:
    """Packet counters of one leg; :meth:`WebRtcLeg.stats` returns a copy.

    Attributes:
        rtp_packets_in: RTP packets decrypted and handed to ``on_rtp``.
        rtp_bytes_in: their plaintext bytes.
        rtcp_packets_in: RTCP compound packets decrypted and handed to ``on_rtcp``.
        rtcp_bytes_in: their plaintext bytes.
        rtp_packets_out: RTP packets protected and sent.
        rtp_bytes_out: their plaintext bytes.
        rtcp_packets_out: RTCP packets protected and sent.
        rtcp_bytes_out: their plaintext bytes.
        unprotect_failures: SRTP/SRTCP packets that failed authentication or the replay
            check on the fast path (aiortc's own pump only logs them at debug level).
        malformed_in: datagrams too short to be anything.
        protect_failures: outgoing packets libsrtp refused (malformed RTP/RTCP).
        send_dropped: outgoing packets dropped because the leg was not connected.
        send_errors: outgoing packets the socket refused (send buffer full, network
            unreachable ...): dropped, as UDP would.
        callback_errors: exceptions raised by ``on_rtp`` / ``on_rtcp``.
    """

    rtp_packets_in: int = 0
    rtp_bytes_in: int = 0
    rtcp_packets_in: int = 0
    rtcp_bytes_in: int = 0
    rtp_packets_out: int = 0
    rtp_bytes_out: int = 0
    rtcp_packets_out: int = 0
    rtcp_bytes_out: int = 0
    unprotect_failures: int = 0
    malformed_in: int = 0
    protect_failures: int = 0
    send_dropped: int = 0
    send_errors: int = 0
    callback_errors: int = 0


def _not_started(data: bytes) -> bytes:
    raise AssertionError("SrtpPath used before start()")  # pragma: no cover


_STARTED: weakref.WeakSet[SrtpPath] = weakref.WeakSet()


def started_srtp_paths() -> int:
    """WebRTC legs whose SRTP contexts are in use (started, not stopped; ``/metrics``)."""
    return len(_STARTED)


class SrtpPath:
    """SRTP unprotect/protect between one ICE socket and the leg's callbacks."""

    __slots__ = (
        "__weakref__",
        "_fallback",
        "_on_rtcp",
        "_on_rtp",
        "_protect",
        "_protect_rtcp",
        "_remote",
        "_rx",
        "_sendto",
        "_unprotect",
        "_unprotect_rtcp",
        "stats",
    )

    def __init__(self, on_rtp: PacketCallback, on_rtcp: PacketCallback) -> None:
        """Deliver to ``on_rtp`` / ``on_rtcp``; nothing is sent or unprotected until start."""
        self.stats = WebRtcLegStats()
        self._on_rtp = on_rtp
        self._on_rtcp = on_rtcp
        self._rx: pylibsrtp.Session | None = None
        self._fallback: Callable[[bytes, tuple[Any, ...]], None] | None = None
        self._sendto: Callable[[bytes, Address], object] | None = None
        self._remote: Address = ("", 0)
        self._protect: Callable[[bytes], bytes] = _not_started
        self._protect_rtcp: Callable[[bytes], bytes] = _not_started
        self._unprotect: Callable[[bytes], bytes] = _not_started  # any bytes-like, once started
        self._unprotect_rtcp: Callable[[bytes], bytes] = _not_started

    def start(
        self,
        *,
        rx: pylibsrtp.Session,
        tx: pylibsrtp.Session,
        sendto: Callable[[bytes, Address], object],
        remote: Address,
        fallback: Callable[[bytes, tuple[Any, ...]], None],
    ) -> None:
        """Unprotect with ``rx``, protect with ``tx`` and send to ``remote`` with ``sendto``.

        Args:
            rx: the session keyed with the peer's SRTP master key.
            tx: the session keyed with ours.
            sendto: the nominated socket's ``sendto(data, addr)``; it may raise
                ``OSError`` (the packet is then dropped and counted).
            remote: the nominated pair's remote address.
            fallback: gets every datagram that is not SRTP (STUN, DTLS).
        """
        self._rx, self._fallback = rx, fallback
        # libsrtp called directly (sip_gateway.media._libsrtp): the per-packet path
        self._protect = srtp_call(tx, "protect")
        self._protect_rtcp = srtp_call(tx, "protect_rtcp")
        self._unprotect = srtp_call(rx, "unprotect")
        self._unprotect_rtcp = srtp_call(rx, "unprotect_rtcp")
        self._remote = remote
        self._sendto = sendto
        _STARTED.add(self)

    @property
    def on_rtp(self) -> PacketCallback:
        """Gets every decrypted RTP packet (replaceable at any time)."""
        return self._on_rtp

    @on_rtp.setter
    def on_rtp(self, callback: PacketCallback) -> None:
        self._on_rtp = callback

    def stop_sending(self) -> None:
        """Drop (and count) every later send: the transport is gone."""
        self._sendto = None
        _STARTED.discard(self)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Handle one datagram of the nominated socket (replaces aioice's handler)."""
        if len(data) < 2 or self._rx is None or not 127 < data[0] < 192:
            if not data:
                self.stats.malformed_in += 1  # aiortc's pump would crash on b""
            elif self._fallback is not None:
                self._fallback(data, addr)
            return
        try:  # a packet too long for libsrtp's buffer fails like a forged one
            if 192 <= data[1] <= 223:
                self.deliver_rtcp(self._unprotect_rtcp(data))
                return
            packet = self._unprotect(data)
        except pylibsrtp.Error:
            self.stats.unprotect_failures += 1
            return
        stats = self.stats  # deliver_rtp, inlined: the per-packet path
        stats.rtp_packets_in += 1
        stats.rtp_bytes_in += len(packet)
        try:
            self._on_rtp(packet)
        except Exception:
            self._callback_failed()

    def deliver_rtp(self, packet: bytes) -> None:
        """Count one plaintext RTP packet and hand it to ``on_rtp``."""
        stats = self.stats
        stats.rtp_packets_in += 1
        stats.rtp_bytes_in += len(packet)
        try:
            self._on_rtp(packet)
        except Exception:
            self._callback_failed()

    def deliver_rtcp(self, packet: bytes) -> None:
        """Count one plaintext RTCP packet and hand it to ``on_rtcp``."""
        stats = self.stats
        stats.rtcp_packets_in += 1
        stats.rtcp_bytes_in += len(packet)
        try:
            self._on_rtcp(packet)
        except Exception:
            self._callback_failed()

    async def handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        """Take RTP that aiortc's pump unprotected (its ``_handle_rtp_data`` signature)."""
        self.deliver_rtp(data)

    async def handle_rtcp_data(self, data: bytes) -> None:
        """Take RTCP that aiortc's pump unprotected (its ``_handle_rtcp_data`` signature)."""
        self.deliver_rtcp(data)

    def send_rtp(self, packet: bytes) -> None:
        """Protect one plaintext RTP packet and send it."""
        sendto = self._sendto
        if sendto is None:
            self.stats.send_dropped += 1
            return
        try:
            wire = self._protect(packet)
        except pylibsrtp.Error:
            self.stats.protect_failures += 1
            return
        try:
            sendto(wire, self._remote)
        except OSError:
            self.stats.send_errors += 1
            return
        stats = self.stats
        stats.rtp_packets_out += 1
        stats.rtp_bytes_out += len(packet)

    def send_rtcp(self, packet: bytes) -> None:
        """Protect one plaintext RTCP compound packet and send it."""
        sendto = self._sendto
        if sendto is None:
            self.stats.send_dropped += 1
            return
        try:
            wire = self._protect_rtcp(packet)
        except pylibsrtp.Error:
            self.stats.protect_failures += 1
            return
        try:
            sendto(wire, self._remote)
        except OSError:
            self.stats.send_errors += 1
            return
        stats = self.stats
        stats.rtcp_packets_out += 1
        stats.rtcp_bytes_out += len(packet)

    def _callback_failed(self) -> None:
        self.stats.callback_errors += 1
        if self.stats.callback_errors == 1:
            logger.exception("WebRTC leg packet callback failed (logged once per leg)")
