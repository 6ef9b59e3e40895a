"""Fuzz target: RTP datagrams, as SRTP arrives and after unprotect.

Property: any bytes

* raise nothing but :class:`MalformedPacketError` from :meth:`RtpPacket.parse`, and
  :func:`parse_fields` (the receiver's fast path) agrees with it field for field or
  raises the same error;
* when they parse, serialize back to the same bytes (padding bytes are written as zeros,
  so with padding: to a packet that parses to the same model);
* never raise from :meth:`SrtpSession.unprotect` / ``unprotect_rtcp`` (drops are
  counted, not raised) with an AES-CM and an AEAD-GCM session, and what unprotects
  parses or raises :class:`MalformedPacketError`.

Seeds: packets from our own :class:`RtpPacketizer` (audio, RFC 4733 events, CSRC,
header extension, padding), in clear and SRTP-protected with the sessions' keys.

Run: ``python -m tests.fuzz.rtp -max_total_time=60 [corpus_dir]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from tests.fuzz.harness import instrumented, main

with instrumented(__name__, "sip_gateway.media"):
    from sip_gateway.media.dtmf import pack_event, unpack_event
    from sip_gateway.media.errors import MalformedPacketError
    from sip_gateway.media.rtp import RtpExtension, RtpPacket, RtpPacketizer, is_rtcp, parse_fields
    from sip_gateway.media.srtp import SrtpSession
    from sip_gateway.sdp.crypto import SUITES, CryptoAttribute
    from sip_gateway.sdp.media_config import SdesCrypto

TARGET = "rtp"
SUITE_NAMES = ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM")


def sdes(suite: str, local: bytes, remote: bytes) -> SdesCrypto:
    """SDES keys for one side of a fixed test call."""
    return SdesCrypto(
        suite=suite,
        tag=1,
        local_key=local,
        remote_key=remote,
        local_attribute=CryptoAttribute.create(tag=1, suite=suite, key_salt=local),
        remote_attribute=CryptoAttribute.create(tag=1, suite=suite, key_salt=remote),
    )


def keys(suite: str) -> tuple[bytes, bytes]:
    """The fixed (sender, receiver) master key || salt of a suite."""
    size = SUITES[suite].key_salt_length
    return bytes(range(1, size + 1)), bytes(range(101, size + 101))


def receiver(suite: str) -> SrtpSession:
    """A fresh receiving session: what the bridge unprotects with."""
    sender_key, receiver_key = keys(suite)
    return SrtpSession(sdes(suite, receiver_key, sender_key))


def one_input(data: bytes) -> None:
    """The property for one input (raises AssertionError or the crash itself)."""
    check_clear(data)
    is_rtcp(data)
    for suite in SUITE_NAMES:
        session = receiver(suite)
        clear = session.unprotect(data)
        if clear is not None:
            check_clear(clear)
        session.unprotect_rtcp(data)


def check_clear(data: bytes) -> None:
    """Parse, compare with the fast path, serialize back."""
    try:
        packet = RtpPacket.parse(data)
    except MalformedPacketError as exc:
        try:
            parse_fields(data)
        except MalformedPacketError as again:
            assert str(again) == str(exc), "parse_fields fails differently"
        else:
            raise AssertionError("parse_fields accepts what parse refuses") from None
        return
    fields = (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc)
    assert parse_fields(data) == (*fields, packet.payload), "parse_fields disagrees"
    wire = packet.serialize()
    if packet.padding == 0:
        assert wire == data, "serialize(parse(x)) != x"
    assert RtpPacket.parse(wire) == packet, "parse(serialize(p)) != p"
    unpack_event(packet.payload)


def seeds() -> Iterator[bytes]:
    """Our packetizer's packets, clear and protected."""
    audio = RtpPacketizer(
        ssrc=0x1234ABCD,
        payload_type=0,
        clock_rate=8000,
        first_sequence=65534,
        first_timestamp=2**32 - 160,
    )
    packets = [
        audio.packet(bytes([0xFF]) * 160, 160, marker=True),
        audio.packet(b"\x7f" * 160, 160),
    ]
    for end in (False, True):
        event = pack_event(5, end=end, volume=10, duration=800)
        packets.append(audio.event_packet(event, payload_type=101, timestamp=1000, marker=not end))
    base = packets[1]
    packets += [
        replace(base, csrc=(1, 2, 3)),
        replace(base, extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00")),
        replace(base, padding=4),
        replace(base, csrc=(7,), extension=RtpExtension(0x1000, bytes(8)), padding=1),
    ]
    for packet in packets:
        clear = packet.serialize()
        yield clear
        for suite in SUITE_NAMES:
            sender_key, receiver_key = keys(suite)
            yield SrtpSession(sdes(suite, sender_key, receiver_key)).protect(clear)


if __name__ == "__main__":
    main(TARGET, one_input, seeds)
