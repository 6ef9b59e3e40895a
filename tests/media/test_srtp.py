"""SrtpSession: round trips per suite, drops by reason, keys never shown, and known answers.

The known-answer tests re-derive SRTP by hand from RFC 3711 (AES-CM key derivation, AES
counter mode, HMAC-SHA1 tag) and RFC 7714 (AES-GCM nonce and AAD) with ``cryptography``,
check the derivation against RFC 3711 appendix B.3, and compare with what libsrtp produces.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.media.errors import LocalMediaError
from sip_gateway.media.srtp import SRTP_PROFILES, SrtpSession, new_sdes_key
from sip_gateway.sdp.crypto import SUITES, CryptoAttribute
from sip_gateway.sdp.media_config import SdesCrypto

ALL_SUITES = tuple(SRTP_PROFILES)
TAG_LENGTH = {
    "AEAD_AES_256_GCM": 16,
    "AEAD_AES_128_GCM": 16,
    "AES_CM_128_HMAC_SHA1_80": 10,
    "AES_CM_128_HMAC_SHA1_32": 4,
}


def sdes(suite: str, local: bytes, remote: bytes, tag: int = 1) -> SdesCrypto:
    return SdesCrypto(
        suite=suite,
        tag=tag,
        local_key=local,
        remote_key=remote,
        local_attribute=CryptoAttribute.create(tag=tag, suite=suite, key_salt=local),
        remote_attribute=CryptoAttribute.create(tag=tag, suite=suite, key_salt=remote),
    )


def pair(suite: str) -> tuple[SrtpSession, SrtpSession, bytes, bytes]:
    size = SUITES[suite].key_salt_length
    a, b = os.urandom(size), os.urandom(size)
    return SrtpSession(sdes(suite, a, b)), SrtpSession(sdes(suite, b, a)), a, b


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = b"\xd5" * 160, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + payload


def rtcp_rr(ssrc: int = 0x11223344) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)  # an empty receiver report


# --- round trips and drops ----------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_round_trip_each_direction(suite: str) -> None:
    alice, bob, _, _ = pair(suite)
    for seq in range(5):
        packet = rtp(seq)
        protected = alice.protect(packet)
        assert len(protected) == len(packet) + TAG_LENGTH[suite]
        assert protected[12:172] != packet[12:]
        assert bob.unprotect(protected) == packet
        back = rtp(seq, ssrc=0x55667788, payload=b"\x01\x02\x03\x04", pt=101)
        assert alice.unprotect(bob.protect(back)) == back
    assert alice.counters.protected == 5 and alice.counters.unprotected == 5
    assert bob.counters.dropped == 0


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_rtcp_round_trip_and_drops(suite: str) -> None:
    alice, bob, _, _ = pair(suite)
    report = rtcp_rr()
    protected = alice.protect_rtcp(report)
    assert bob.unprotect_rtcp(protected) == report
    assert bob.unprotect_rtcp(protected) is None
    assert bob.last_drop_reason == "replayed"
    tampered = bytearray(alice.protect_rtcp(report))
    tampered[9] ^= 0x40
    assert bob.unprotect_rtcp(bytes(tampered)) is None
    assert bob.last_drop_reason == "auth_failed"
    assert bob.unprotect_rtcp(report) is None  # plain RTCP: no index, no tag
    assert bob.counters.dropped == 3


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_tampered_replayed_and_wrong_key_dropped(suite: str) -> None:
    alice, bob, _, _ = pair(suite)
    first = alice.protect(rtp(1))
    assert bob.unprotect(first) is not None
    assert bob.unprotect(first) is None
    assert bob.last_drop_reason == "replayed"

    tampered = bytearray(alice.protect(rtp(2)))
    tampered[40] ^= 0x01
    assert bob.unprotect(bytes(tampered)) is None
    assert bob.last_drop_reason == "auth_failed"

    stranger, _, _, _ = pair(suite)  # same suite, other keys
    assert bob.unprotect(stranger.protect(rtp(3))) is None
    assert bob.last_drop_reason == "auth_failed"

    assert bob.unprotect(rtp(4)) is None  # plain RTP inside the SRTP session
    assert bob.counters.auth_failed == 3 and bob.counters.replayed == 1
    good = alice.protect(rtp(5))
    assert bob.unprotect(good) == rtp(5) and bob.last_drop_reason is None


def test_old_packet_outside_the_replay_window_dropped() -> None:
    alice, bob, _, _ = pair("AES_CM_128_HMAC_SHA1_80")
    packets = [alice.protect(rtp(seq)) for seq in range(300)]
    assert bob.unprotect(packets[299]) is not None
    assert bob.unprotect(packets[0]) is None  # 299 behind: outside libsrtp's 128 window
    assert bob.last_drop_reason == "replayed"
    assert bob.unprotect(packets[250]) is not None  # inside the window, late: accepted


def test_reordered_within_window_accepted() -> None:
    alice, bob, _, _ = pair("AEAD_AES_128_GCM")
    packets = [alice.protect(rtp(seq)) for seq in range(10)]
    for index in (0, 2, 1, 5, 3, 4, 9, 6, 8, 7):
        assert bob.unprotect(packets[index]) == rtp(index)


@pytest.mark.parametrize(
    "datagram",
    [b"", b"\x80", b"\x80\x00\x00\x01", b"\x00" * 40, b"\xff" * 40, b"\x80" * 1600],
)
def test_garbage_counted_as_malformed(datagram: bytes) -> None:
    _, bob, _, _ = pair("AES_CM_128_HMAC_SHA1_80")
    assert bob.unprotect(datagram) is None
    assert bob.unprotect_rtcp(datagram) is None
    assert bob.counters.malformed == 2


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=1600), rtcp=st.booleans())
def test_any_bytes_are_dropped_never_raise(data: bytes, rtcp: bool) -> None:
    session = _FUZZ_SESSION
    before = session.counters.dropped
    result = session.unprotect_rtcp(data) if rtcp else session.unprotect(data)
    assert result is None
    assert session.counters.dropped == before + 1
    assert session.last_drop_reason in ("auth_failed", "replayed", "malformed")


_FUZZ_SESSION = pair("AES_CM_128_HMAC_SHA1_32")[1]


def test_bytearray_and_memoryview_accepted() -> None:
    alice, bob, _, _ = pair("AEAD_AES_256_GCM")
    protected = alice.protect(rtp(7))
    assert bob.unprotect(memoryview(bytearray(protected))) == rtp(7)


def test_protect_refuses_bad_sizes_and_repeats() -> None:
    alice, _, _, _ = pair("AES_CM_128_HMAC_SHA1_80")
    with pytest.raises(LocalMediaError):
        alice.protect(b"\x80\x00")
    with pytest.raises(LocalMediaError):
        alice.protect(rtp(1, payload=bytes(1400)))
    alice.protect(rtp(1))
    with pytest.raises(LocalMediaError):  # the same index twice would reuse a keystream
        alice.protect(rtp(1))


def test_unsupported_suite_and_bad_key_length_refused() -> None:
    key = bytes(46)
    with pytest.raises(LocalMediaError):
        SrtpSession(sdes("AES_256_CM_HMAC_SHA1_80", key, key))
    good = bytes(30)
    crypto = sdes("AES_CM_128_HMAC_SHA1_80", good, good)
    with pytest.raises(LocalMediaError):
        SrtpSession(
            SdesCrypto(
                suite=crypto.suite,
                tag=1,
                local_key=good,
                remote_key=good[:29],
                local_attribute=crypto.local_attribute,
                remote_attribute=crypto.remote_attribute,
            )
        )


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_new_sdes_key_lengths(suite: str) -> None:
    key = new_sdes_key(suite, os.urandom)
    assert len(key) == SUITES[suite].key_salt_length
    with pytest.raises(LocalMediaError):
        new_sdes_key(suite, lambda n: bytes(n - 1))
    with pytest.raises(LocalMediaError):
        new_sdes_key("F8_128_HMAC_SHA1_80", os.urandom)


def test_same_keys() -> None:
    alice, _, a, b = pair("AEAD_AES_128_GCM")
    assert alice.same_keys(sdes("AEAD_AES_128_GCM", a, b, tag=7))
    assert not alice.same_keys(sdes("AEAD_AES_128_GCM", b, a))
    assert not alice.same_keys(sdes("AEAD_AES_128_GCM", a, os.urandom(28)))


def test_keys_never_in_repr_or_str() -> None:
    alice, _, a, b = pair("AES_CM_128_HMAC_SHA1_80")
    alice.protect(rtp(1))
    alice.unprotect(b"garbage!" * 3)
    crypto = sdes("AES_CM_128_HMAC_SHA1_80", a, b)
    texts = [repr(alice), str(alice), repr(alice.counters), repr(crypto)]
    for key in (a, b):
        forms = (key.hex(), key.hex().upper(), repr(key)[2:-1], _b64(key), _b64(key[:16]))
        for text in texts:
            assert not any(form in text for form in forms)
    assert "AES_CM_128_HMAC_SHA1_80" in repr(alice)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()[:20]


# --- known answers: RFC 3711 and RFC 7714 by hand -------------------------------------------

RFC3711_MASTER_KEY = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
RFC3711_MASTER_SALT = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")


def aes_cm_prf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 4.3.1 with key_derivation_rate 0 (r = 0): AES-CM keystream at x * 2^16."""
    salt = master_salt.ljust(14, b"\x00")  # RFC 7714 section 11: 96-bit salts padded right
    x = int.from_bytes(salt, "big") ^ (label << 48)
    iv = (x << 16).to_bytes(16, "big")
    encryptor = Cipher(algorithms.AES(master_key), modes.CTR(iv)).encryptor()
    return encryptor.update(bytes(length))


def test_rfc3711_b3_key_derivation() -> None:
    k, s = RFC3711_MASTER_KEY, RFC3711_MASTER_SALT
    assert aes_cm_prf(k, s, 0, 16).hex().upper() == "C61E7A93744F39EE10734AFE3FF7A087"
    assert aes_cm_prf(k, s, 2, 14).hex().upper() == "30CBBC08863D8C85D49DB34A9AE1"
    assert aes_cm_prf(k, s, 1, 20).hex().upper().startswith("CEBE321F6FF7716B6FD4AB49AF256A15")


def srtp_aes_cm(master: bytes, packet: bytes, tag_length: int) -> bytes:
    """RFC 3711 SRTP of the first packets of a stream (ROC 0) with AES-CM + HMAC-SHA1."""
    key, salt = master[:16], master[16:]
    enc, auth = aes_cm_prf(key, salt, 0, 16), aes_cm_prf(key, salt, 1, 20)
    session_salt = aes_cm_prf(key, salt, 2, 14)
    seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
    iv = (int.from_bytes(session_salt, "big") << 16) ^ (ssrc << 64) ^ (seq << 16)
    encryptor = Cipher(algorithms.AES(enc), modes.CTR(iv.to_bytes(16, "big"))).encryptor()
    body = packet[:12] + encryptor.update(packet[12:])
    tag = hmac.new(auth, body + bytes(4), hashlib.sha1).digest()[:tag_length]
    return body + tag


def srtp_aes_gcm(master: bytes, packet: bytes) -> bytes:
    """RFC 7714 section 8 SRTP (ROC 0): nonce = (0 || SSRC || ROC || SEQ) XOR salt, AAD = header."""
    key_length = len(master) - 12
    key, salt = master[:key_length], master[key_length:]
    enc = aes_cm_prf(key, salt, 0, key_length)
    session_salt = aes_cm_prf(key, salt, 2, 12)
    nonce = bytes(2) + packet[8:12] + bytes(4) + packet[2:4]
    nonce = bytes(x ^ y for x, y in zip(nonce, session_salt, strict=True))
    return packet[:12] + AESGCM(enc).encrypt(nonce, packet[12:], packet[:12])


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_known_answer_against_an_independent_derivation(suite: str) -> None:
    master = (RFC3711_MASTER_KEY * 2)[: SUITES[suite].master_key_length]
    master += (RFC3711_MASTER_SALT)[: SUITES[suite].master_salt_length]
    session = SrtpSession(sdes(suite, master, master))
    for seq in (0x1234, 0x1235):
        packet = rtp(seq, ssrc=0xCAFEBABE, payload=bytes(range(160)))
        if suite.startswith("AEAD"):
            expected = srtp_aes_gcm(master, packet)
        else:
            expected = srtp_aes_cm(master, packet, TAG_LENGTH[suite])
        assert session.protect(packet) == expected
        assert session.unprotect(expected) == packet
