"""SDES-keyed SRTP and SRTCP (RFC 3711, RFC 7714) on pylibsrtp.

Theory of operation: one call leg has two SRTP contexts, built from the negotiated
:class:`~sip_gateway.sdp.SdesCrypto`:

* outbound: our master key (``local_key``), any SSRC we send (``SSRC_ANY_OUTBOUND``);
* inbound: the peer's master key (``remote_key``), any SSRC it sends
  (``SSRC_ANY_INBOUND``). libsrtp creates a per-SSRC stream (with its own replay
  window, libsrtp's default of 128 packets) only after a packet from that SSRC
  authenticates, so forged packets cost no state.

:meth:`SrtpSession.unprotect` and :meth:`SrtpSession.unprotect_rtcp` never raise on
what the network sends: a datagram that fails is dropped (``None``) and counted under
one reason, ``auth_failed``, ``replayed`` or ``malformed``; the reason of the last drop
is kept in :attr:`SrtpSession.last_drop_reason` for the caller's own counters.

Per packet, libsrtp is called directly through :func:`~._libsrtp.srtp_call` (re-exported
here): pylibsrtp's per-call Python wrapper cost about as much as the cryptography.

Secrets: master keys go straight into libsrtp and are not kept in Python objects;
:meth:`SrtpSession.same_keys` compares a SHA-256 digest of suite and keys instead. No
``repr``, ``str``, error message or counter here contains key material.

This module does no I/O and holds no clock; :func:`new_sdes_key` draws from an
injected ``key_source`` (``secrets.token_bytes`` in production).
"""

from __future__ import annotations

import hashlib
import hmac
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import pylibsrtp

from sip_gateway.sdp.crypto import SUITES
from sip_gateway.sdp.media_config import SdesCrypto

from ._libsrtp import AUTH_FAIL, REPLAY_STATUSES, Packet, SrtpStatusError, srtp_call
from .errors import LocalMediaError

__all__ = [
    "DROP_REASONS",
    "SRTP_PROFILES",
    "SrtpCounters",
    "SrtpSession",
    "live_srtp_sessions",
    "new_sdes_key",
    "srtp_call",
]

SRTP_PROFILES: Final[Mapping[str, int]] = MappingProxyType(
    {
        "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
        "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
        "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    }
)
"""SDES suite name (RFC 4568, RFC 7714) -> pylibsrtp profile, in our preference order."""

DROP_REASONS: Final = ("auth_failed", "replayed", "malformed")
"""Why an SRTP or SRTCP datagram is dropped (the counter names)."""

_RTP_HEADER: Final = 12
_RTCP_HEADER: Final = 8
_MAX_DATAGRAM: Final = 1500 - pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN
"""pylibsrtp processes in a 1500-byte buffer; larger packets cannot be protected."""


@dataclass(slots=True, kw_only=True)
class SrtpCounters:
    """Packets through one :class:`SrtpSession` (RTP and RTCP together).

    Attributes:
        protected: packets protected (sent).
        unprotected: packets that authenticated and were decrypted.
        auth_failed: dropped: authentication tag wrong (tampered, wrong key, forged).
        replayed: dropped: index already seen or older than the replay window.
        malformed: dropped: not parseable as SRTP/SRTCP for this suite.
    """

    protected: int = 0
    unprotected: int = 0
    auth_failed: int = 0
    replayed: int = 0
    malformed: int = 0

    @property
    def dropped(self) -> int:
        """All drops, whatever the reason."""
        return self.auth_failed + self.replayed + self.malformed


def new_sdes_key(suite: str, key_source: Callable[[int], bytes]) -> bytes:
    """A fresh master key || master salt for ``suite``.

    Args:
        suite: an SDES suite name from :data:`SRTP_PROFILES`.
        key_source: returns ``n`` cryptographically random bytes (``secrets.token_bytes``).

    Raises:
        LocalMediaError: the suite is not supported or ``key_source`` returned the
            wrong number of bytes.
    """
    if suite not in SRTP_PROFILES:
        raise LocalMediaError(f"unsupported SRTP suite: {suite}")
    size = SUITES[suite].key_salt_length
    key = key_source(size)
    if len(key) != size:
        raise LocalMediaError(f"key_source returned {len(key)} bytes, expected {size}")
    return key


_LIVE: weakref.WeakSet[SrtpSession] = weakref.WeakSet()


def live_srtp_sessions() -> int:
    """SDES SRTP sessions of the process in use (for ``/metrics``).

    A session counts from its creation until its media session retires it (closed, or
    re-keyed) or it is freed.
    """
    return len(_LIVE)


class SrtpSession:
    """Both SRTP directions of one SDES-keyed call leg.

    Args:
        crypto: the negotiated suite and the two master keys.

    Raises:
        LocalMediaError: the suite is not supported or a key has the wrong length.
    """

    __slots__ = (
        "__weakref__",
        "_inbound",
        "_key_id",
        "_outbound",
        "_protect_rtcp",
        "_protect_rtp",
        "_unprotect_rtcp",
        "_unprotect_rtp",
        "counters",
        "last_drop_reason",
        "suite",
    )

    def __init__(self, crypto: SdesCrypto) -> None:
        profile = SRTP_PROFILES.get(crypto.suite)
        if profile is None:
            raise LocalMediaError(f"unsupported SRTP suite: {crypto.suite}")
        size = SUITES[crypto.suite].key_salt_length
        if len(crypto.local_key) != size or len(crypto.remote_key) != size:
            raise LocalMediaError(f"{crypto.suite} needs {size}-byte master key || salt")
        self.suite = crypto.suite
        self._outbound = _session(crypto.local_key, profile, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._inbound = _session(crypto.remote_key, profile, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        # libsrtp called directly (see _libsrtp): every packet of the leg goes through these
        self._protect_rtp = srtp_call(self._outbound, "protect")
        self._unprotect_rtp = srtp_call(self._inbound, "unprotect")
        self._protect_rtcp = srtp_call(self._outbound, "protect_rtcp")
        self._unprotect_rtcp = srtp_call(self._inbound, "unprotect_rtcp")
        self._key_id = _key_id(crypto)
        self.counters = SrtpCounters()
        self.last_drop_reason: str | None = None
        _LIVE.add(self)

    def retire(self) -> None:
        """No longer in use (its media session closed or re-keyed): leave the live count."""
        _LIVE.discard(self)

    def __repr__(self) -> str:
        """Suite and counters only (never key material)."""
        return f"SrtpSession(suite={self.suite!r}, counters={self.counters!r})"

    def same_keys(self, crypto: SdesCrypto) -> bool:
        """Whether ``crypto`` has this session's suite and both keys (a re-INVITE that
        keeps the crypto lines must keep the contexts: rollover counters, replay state)."""
        return hmac.compare_digest(self._key_id, _key_id(crypto))

    def protect(self, rtp: bytes) -> bytes:
        """Encrypt and authenticate one RTP packet.

        Raises:
            LocalMediaError: the packet is too short or too long, or libsrtp refused it
                (e.g. a sequence number sent twice).
        """
        # _protect inlined: this runs once per packet sent
        if not _RTP_HEADER <= len(rtp) <= _MAX_DATAGRAM:
            raise LocalMediaError(f"cannot protect a {len(rtp)}-byte packet", reason="protect")
        try:
            protected = self._protect_rtp(rtp)
        except pylibsrtp.Error as exc:
            raise LocalMediaError(f"SRTP protect failed: {exc}", reason="protect") from None
        self.counters.protected += 1
        return protected

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """Encrypt and authenticate one (compound) RTCP packet.

        Raises:
            LocalMediaError: the packet is too short or too long, or libsrtp refused it.
        """
        return self._protect(rtcp, self._protect_rtcp, _RTCP_HEADER)

    def unprotect(self, srtp: bytes | bytearray | memoryview) -> bytes | None:
        """Authenticate and decrypt one SRTP packet; None (counted) when it is dropped."""
        # _unprotect inlined: this runs once per packet received
        if not _RTP_HEADER <= len(srtp) <= _MAX_DATAGRAM or srtp[0] >> 6 != 2:
            self._drop("malformed")
            return None
        try:
            plain = self._unprotect_rtp(srtp)
        except SrtpStatusError as exc:
            self._drop(_classify(exc.status))
            return None
        self.counters.unprotected += 1
        self.last_drop_reason = None
        return plain

    def unprotect_rtcp(self, srtcp: bytes | bytearray | memoryview) -> bytes | None:
        """Authenticate and decrypt one SRTCP packet; None (counted) when it is dropped."""
        return self._unprotect(srtcp, self._unprotect_rtcp, _RTCP_HEADER)

    def _protect(self, packet: bytes, func: Callable[[Packet], bytes], header: int) -> bytes:
        if not header <= len(packet) <= _MAX_DATAGRAM:
            raise LocalMediaError(f"cannot protect a {len(packet)}-byte packet", reason="protect")
        try:
            protected = func(packet)
        except pylibsrtp.Error as exc:
            raise LocalMediaError(f"SRTP protect failed: {exc}", reason="protect") from None
        self.counters.protected += 1
        return protected

    def _unprotect(
        self,
        data: bytes | bytearray | memoryview,
        func: Callable[[Packet], bytes],
        header: int,
    ) -> bytes | None:
        if not header <= len(data) <= _MAX_DATAGRAM or data[0] >> 6 != 2:
            self._drop("malformed")
            return None
        try:
            plain = func(data)
        except SrtpStatusError as exc:
            self._drop(_classify(exc.status))
            return None
        self.counters.unprotected += 1
        self.last_drop_reason = None
        return plain

    def _drop(self, reason: str) -> None:
        setattr(self.counters, reason, getattr(self.counters, reason) + 1)
        self.last_drop_reason = reason


def _classify(status: int) -> str:
    if status == AUTH_FAIL:
        return "auth_failed"
    if status in REPLAY_STATUSES:
        return "replayed"
    return "malformed"


def _session(key: bytes, profile: int, ssrc_type: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)
    session = pylibsrtp.Session(policy)
    policy.key = None  # drop the Python-side copy; libsrtp holds the derived keys
    return session


def _key_id(crypto: SdesCrypto) -> bytes:
    digest = hashlib.sha256(crypto.suite.encode())
    for key in (crypto.local_key, crypto.remote_key):
        digest.update(len(key).to_bytes(2, "big"))
        digest.update(key)
    return digest.digest()
