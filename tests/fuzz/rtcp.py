"""Fuzz target: compound RTCP datagrams (after SRTCP unprotect) and what a session reads.

Property: any bytes either raise :class:`MalformedPacketError` from :func:`parse_rtcp`
or give packets that

* the session's report reader (:class:`RtcpReports.read`, fed with our SSRC and the
  peer's, as a call would) takes without raising;
* serialize with :func:`build_rtcp` into a compound that parses again, and from there
  serialization is a fixed point (the first pass may normalize padding and replace
  undecodable SDES/BYE text); the one exception: text with replaced bytes can outgrow
  its 255-byte length field and not serialize at all.

Seeds: compounds from our own session code (SR/RR with report blocks, SDES CNAME, BYE
with reason) and opaque feedback packets.

Run: ``python -m tests.fuzz.rtcp -max_total_time=60 [corpus_dir]``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tests.fuzz.harness import instrumented, main

with instrumented(__name__, "sip_gateway.media"):
    from sip_gateway.media._rtcp_reports import RtcpReports
    from sip_gateway.media.errors import LocalMediaError, MalformedPacketError
    from sip_gateway.media.reception import ReceptionStats
    from sip_gateway.media.rtcp import (
        Bye,
        ReceiverReport,
        ReportBlock,
        RtcpPacket,
        RtcpUnknown,
        SdesChunk,
        SenderReport,
        SourceDescription,
        build_rtcp,
        parse_rtcp,
    )
    from sip_gateway.media.rtp import RtpPacketizer

TARGET = "rtcp"
LOCAL_SSRC = 0x1234ABCD
REMOTE_SSRC = 0x5678EF01
UNIX_OFFSET = 1_700_000_000.0


def one_input(data: bytes) -> None:
    """The property for one input (raises AssertionError or the crash itself)."""
    try:
        packets = parse_rtcp(data)
    except MalformedPacketError:
        return
    reports = RtcpReports("fuzz@example.org", random.Random(0))
    reception = ReceptionStats(REMOTE_SSRC, 8000)
    reception.update(1000, 160_000, 10.0)
    reports.read(
        tuple(packets),
        20.0,
        local_ssrc=LOCAL_SSRC,
        remote_ssrc=REMOTE_SSRC,
        reception=reception,
        unix_offset=UNIX_OFFSET,
    )
    reception.report_block(21.0)
    try:
        wire = build_rtcp(packets)
    except LocalMediaError:
        # SDES items and BYE reasons are decoded with U+FFFD for bad UTF-8 (documented):
        # the replacement (3 bytes each) can push a 255-byte item over its length field.
        assert any("\ufffd" in text for text in texts(packets)), "parsed RTCP does not serialize"
        return
    again = parse_rtcp(wire)
    assert build_rtcp(again) == wire, "serialization is not a fixed point"
    assert len(again) == len(packets), "a packet was lost in serialization"


def texts(packets: list[RtcpPacket]) -> Iterator[str]:
    """The decoded texts of a compound: SDES items and BYE reasons."""
    for packet in packets:
        if isinstance(packet, SourceDescription):
            yield from (text for chunk in packet.chunks for _, text in chunk.items)
        elif isinstance(packet, Bye) and packet.reason is not None:
            yield packet.reason


def seeds() -> Iterator[bytes]:
    """Compounds as our sessions send them, and a few the peer might."""
    reports = RtcpReports("bridge@example.org", random.Random(1))
    reception = ReceptionStats(REMOTE_SSRC, 8000)
    for sequence in range(20):
        reception.update(sequence, 160 * sequence, 10.0 + sequence * 0.02)
    sender = RtpPacketizer(LOCAL_SSRC, 0, 8000, 100, 2000)
    sender.packet(bytes(160), 160)
    for bye in (False, True):
        yield reports.compound(
            11.0,
            ssrc=LOCAL_SSRC,
            reception=reception,
            sender=None,
            unix_offset=UNIX_OFFSET,
            bye=bye,
        )
        yield reports.compound(
            11.0,
            ssrc=LOCAL_SSRC,
            reception=reception,
            sender=(sender, 2160),
            unix_offset=UNIX_OFFSET,
            bye=bye,
        )
    block = ReportBlock(
        ssrc=LOCAL_SSRC,
        fraction_lost=3,
        cumulative_lost=-2,
        highest_sequence=70000,
        jitter=12,
        last_sr=0x12345678,
        delay_since_last_sr=65536,
    )
    yield build_rtcp(
        [
            SenderReport(
                ssrc=REMOTE_SSRC,
                ntp_timestamp=2**63,
                rtp_timestamp=5,
                packet_count=1,
                octet_count=160,
                reports=(block,),
                extension=b"\x00\x01\x02\x03",
            ),
            SourceDescription(
                chunks=(
                    SdesChunk(ssrc=REMOTE_SSRC, items=((1, "peer@example.com"), (6, "tool"))),
                    SdesChunk(ssrc=7, items=()),
                )
            ),
            RtcpUnknown(packet_type=205, count=1, body=bytes(8)),  # RTPFB generic NACK
            Bye(sources=(REMOTE_SSRC, 7), reason="going away"),
        ]
    )
    padded = bytearray(build_rtcp([ReceiverReport(ssrc=REMOTE_SSRC, reports=(block,))]))
    padded[0] |= 0x20
    padded[2:4] = ((len(padded) + 4) // 4 - 1).to_bytes(2, "big")
    yield bytes(padded) + b"\x00\x00\x00\x04"


if __name__ == "__main__":
    main(TARGET, one_input, seeds)
