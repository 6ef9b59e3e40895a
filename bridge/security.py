"""The call security record (DESIGN section 4), built only from negotiated facts.

Theory of operation: a :class:`SecurityRecord` belongs to one call. The call layer feeds
it what it observed as legs come up: the live TLS session of the browser's WebSocket and
of the trunk connection (:class:`~sip_gateway.tls.TlsSessionInfo`, read from the
``ssl`` object), the DTLS facts of the WebRTC leg (read from the DTLS session, with the
certificate fingerprint compared against the ``a=fingerprint`` received over TLS) and the
SDES suite in force on the gateway leg. :meth:`SecurityRecord.as_dict` renders the JSON of
DESIGN section 4; a fact that was not observed is ``null``, never a default, and
``encrypted`` is true only when the leg's session was seen up. Key material never enters
this module: it receives suites and fingerprints, never keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sip_gateway.sdp import MediaConfig, SdesCrypto
from sip_gateway.tls import TlsSessionInfo

from .media.webrtc_leg import DtlsFacts

__all__ = ["PSTN_CAVEAT", "PSTN_CAVEAT_TEXT", "KeyHistory", "PolicyRefusal", "SecurityRecord"]

PSTN_CAVEAT = "pstn-leg-carrier-dependent"
PSTN_CAVEAT_TEXT = (
    "beyond the PSTN gateway the call crosses the public telephone network; "
    "its encryption depends on the carrier"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRefusal:
    """A policy refusal recorded on a call (``reason`` is a short machine name)."""

    reason: str
    detail: str
    at: float


class KeyHistory:
    """Which SDES keys this process has already used, to observe ``keys_fresh``.

    A key is remembered only as a keyed BLAKE2b digest under a random per-process secret
    (never the key), in a bounded first-in-first-out set. A gateway leg's keys are fresh
    when our key was not used by another call and the peer's key is not ours echoed back
    (reusing one SRTP key in both directions or across calls reuses the keystream).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._secret = secrets.token_bytes(32)
        self._owner: OrderedDict[bytes, str] = OrderedDict()
        self._capacity = capacity

    def __repr__(self) -> str:
        return f"<KeyHistory {len(self._owner)} keys>"

    def _digest(self, key: bytes) -> bytes:
        return hashlib.blake2b(key, key=self._secret, digest_size=16).digest()

    def fresh(self, call_id: str, local_key: bytes, remote_key: bytes) -> bool:
        """True when ``local_key`` is this call's alone and the peer did not echo it."""
        digest = self._digest(local_key)
        owner = self._owner.setdefault(digest, call_id)
        if len(self._owner) > self._capacity:
            self._owner.popitem(last=False)
        return owner == call_id and not hmac.compare_digest(local_key, remote_key)


_KEYS = KeyHistory()


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def _signaling(transport: str, tls: TlsSessionInfo | None, *, server: bool) -> dict[str, Any]:
    if tls is None:
        return {"transport": transport, "tls_version": None, "cipher": None}
    facts: dict[str, Any] = {
        "transport": transport,
        "tls_version": tls.version,
        "cipher": tls.cipher,
    }
    if not server:
        facts["peer_certificate_verified"] = tls.peer_certificate_verified
        facts["peer_certificate_subject"] = tls.peer_certificate_subject
        facts["mutual_tls"] = tls.client_certificate_presented
    return facts


@dataclass(slots=True)
class SecurityRecord:
    """The per-leg encryption record of one call (see the module docstring)."""

    call_id: str
    direction: str
    from_party: str | None
    to_party: str | None
    started_at: float = field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    webrtc_tls: TlsSessionInfo | None = None
    webrtc_transport: str = "wss"
    dtls: DtlsFacts | None = None
    webrtc_codec: str | None = None
    gateway_peer: str | None = None
    gateway_tls: TlsSessionInfo | None = None
    gateway_suite: str | None = None
    gateway_keys_fresh: bool | None = None
    gateway_codec: str | None = None
    reaches_pstn: bool = True
    trunk: str | None = None
    user: str | None = None
    sip_status: int | None = None
    policy_refusals: list[PolicyRefusal] = field(default_factory=list)
    frozen: bool = False

    def observe_gateway_media(self, config: MediaConfig, keys: KeyHistory = _KEYS) -> None:
        """The SDES config in force on the gateway leg (suite, key freshness, codec).

        The keys themselves are only looked up in ``keys`` (see :class:`KeyHistory`).
        """
        if self.frozen:
            return
        crypto = config.crypto
        if isinstance(crypto, SdesCrypto):
            self.gateway_suite = crypto.suite
            self.gateway_keys_fresh = keys.fresh(self.call_id, crypto.local_key, crypto.remote_key)
        codec = config.codecs[0]
        self.gateway_codec = f"{codec.name}/{codec.clock_rate}"

    def refuse(self, reason: str, detail: str) -> None:
        """Record a policy refusal on the call."""
        if not self.frozen:
            self.policy_refusals.append(PolicyRefusal(reason=reason, detail=detail, at=time.time()))

    def freeze(self, end_reason: str, sip_status: int | None = None) -> None:
        """The call is over: set the end reason and time; later updates are ignored."""
        if self.frozen:
            return
        self.ended_at = time.time()
        self.end_reason = end_reason
        self.sip_status = sip_status
        self.frozen = True

    # -- rendering ---------------------------------------------------------------------

    def _webrtc_leg(self) -> dict[str, Any]:
        dtls = self.dtls
        connected = dtls is not None and dtls.srtp_profile is not None
        media: dict[str, Any] = {
            "protocol": "DTLS-SRTP",
            "dtls_version": dtls.dtls_version if dtls else None,
            "dtls_cipher": dtls.cipher if dtls else None,
            "srtp_profile": dtls.srtp_profile if dtls else None,
            "dtls_role": dtls.role if dtls else None,
            "remote_fingerprint": dtls.remote_fingerprint if dtls else None,
            "fingerprint_matches_signaling": dtls.fingerprint_matches_signaling if dtls else None,
            "codec": self.webrtc_codec,
        }
        signaling_up = self.webrtc_tls is not None
        encrypted: bool | None = None
        if signaling_up and connected and dtls is not None:
            encrypted = dtls.fingerprint_matches_signaling is True
        return {
            "leg": "webrtc",
            "encrypted": encrypted,
            "signaling": _signaling(self.webrtc_transport, self.webrtc_tls, server=True),
            "media": media,
        }

    def _gateway_leg(self) -> dict[str, Any]:
        encrypted: bool | None = None
        if self.gateway_tls is not None and self.gateway_suite is not None:
            encrypted = True
        return {
            "leg": "gateway",
            "encrypted": encrypted,
            "peer": self.gateway_peer,
            "signaling": _signaling("tls", self.gateway_tls, server=False),
            "media": {
                "protocol": "SRTP",
                "keying": "SDES",
                "crypto_suite": self.gateway_suite,
                "keys_fresh": self.gateway_keys_fresh,
                "codec": self.gateway_codec,
            },
        }

    def as_dict(self) -> dict[str, Any]:
        """The record as DESIGN section 4's JSON object."""
        legs = [self._webrtc_leg()]
        caveats: list[str] = []
        if self.reaches_pstn:
            legs.append(self._gateway_leg())
            legs.append(
                {
                    "leg": "pstn",
                    "encrypted": None,
                    "status": "carrier-dependent",
                    "caveat": PSTN_CAVEAT_TEXT,
                }
            )
            caveats.append(PSTN_CAVEAT)
        return {
            "call_id": self.call_id,
            "direction": self.direction,
            "from": self.from_party,
            "to": self.to_party,
            "started_at": _iso(self.started_at),
            "answered_at": _iso(self.answered_at),
            "ended_at": _iso(self.ended_at),
            "end_reason": self.end_reason,
            "sip_status": self.sip_status,
            "user": self.user,
            "trunk": self.trunk,
            "legs": legs,
            "end_to_end_encrypted": False,
            "caveats": caveats,
            "policy_refusals": [
                {"reason": r.reason, "detail": r.detail, "at": _iso(r.at)}
                for r in self.policy_refusals
            ],
        }
