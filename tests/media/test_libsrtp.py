"""Direct libsrtp calls: the same bytes as pylibsrtp's wrapper, libsrtp's own checks kept."""

from __future__ import annotations

import struct

import pylibsrtp
import pytest

from sip_gateway.media._libsrtp import (
    AUTH_FAIL,
    BUFFER_SIZE,
    REPLAY_STATUSES,
    SrtpStatusError,
    srtp_call,
)

KEY = bytes(range(30))
PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80


def session(outbound: bool) -> pylibsrtp.Session:
    ssrc_type = (
        pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    )
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=ssrc_type, srtp_profile=PROFILE))


def rtp(seq: int, size: int = 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234) + bytes(size)


def test_protect_matches_pylibsrtp_and_round_trips() -> None:
    wrapper, direct = session(True), srtp_call(session(True), "protect")
    unprotect = srtp_call(session(False), "unprotect")
    for seq in range(5):
        protected = direct(rtp(seq))
        assert protected == wrapper.protect(rtp(seq))
        assert unprotect(memoryview(protected)) == rtp(seq)


def test_rtcp_round_trip() -> None:
    report = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    protected = srtp_call(session(True), "protect_rtcp")(report)
    assert srtp_call(session(False), "unprotect_rtcp")(protected) == report


def test_replay_tamper_and_oversize_are_libsrtp_failures() -> None:
    protect, unprotect = srtp_call(session(True), "protect"), srtp_call(session(False), "unprotect")
    first = protect(rtp(1))
    unprotect(first)
    with pytest.raises(SrtpStatusError) as replayed:
        unprotect(first)
    assert replayed.value.status in REPLAY_STATUSES
    tampered = bytearray(protect(rtp(2)))
    tampered[20] ^= 1
    with pytest.raises(SrtpStatusError) as forged:
        unprotect(bytes(tampered))
    assert forged.value.status == AUTH_FAIL
    assert isinstance(forged.value, pylibsrtp.Error)
    with pytest.raises(SrtpStatusError):
        unprotect(bytes(BUFFER_SIZE + 1))
    with pytest.raises(SrtpStatusError):
        protect(rtp(3, BUFFER_SIZE))
    assert unprotect(protect(rtp(4))) == rtp(4)  # still usable afterwards
