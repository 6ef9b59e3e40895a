"""RTCP compound packets (RFC 3550 6) and reception statistics (appendix A)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.media.errors import LocalMediaError, MalformedPacketError, MediaError
from sip_gateway.media.reception import ReceptionStats, round_trip_time, rtcp_interval
from sip_gateway.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpUnknown,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_middle32,
    ntp_timestamp,
    parse_rtcp,
)
from sip_gateway.media.rtp import is_rtcp

FUZZ = settings(max_examples=400, deadline=None)

BLOCK = ReportBlock(
    ssrc=0x0A0B0C0D,
    fraction_lost=51,
    cumulative_lost=-3,
    highest_sequence=0x0001_0005,
    jitter=37,
    last_sr=0x12345678,
    delay_since_last_sr=81920,
)


def test_sender_report_round_trip_and_wire_layout():
    sr = SenderReport(
        ssrc=0x11223344,
        ntp_timestamp=ntp_timestamp(1_700_000_000.25),
        rtp_timestamp=160_000,
        packet_count=1000,
        octet_count=160_000,
        reports=(BLOCK,),
    )
    wire = sr.serialize()
    assert wire[:4] == bytes.fromhex("81c8000c")  # V=2 RC=1, PT=200, 12 words follow
    assert len(wire) == 52
    assert is_rtcp(wire)
    assert parse_rtcp(wire) == [sr]
    # cumulative lost is a signed 24-bit field
    assert wire[28 + 5 : 28 + 8] == bytes.fromhex("fffffd")


def test_receiver_report_round_trip():
    rr = ReceiverReport(ssrc=7, reports=(BLOCK, ReportBlock(ssrc=8)))
    wire = rr.serialize()
    assert wire[:4] == bytes.fromhex("82c9000d")
    assert parse_rtcp(wire) == [rr]
    assert parse_rtcp(ReceiverReport(ssrc=7).serialize()) == [ReceiverReport(ssrc=7)]


def test_compound_sr_and_sdes():
    sr = SenderReport(
        ssrc=0x5EED, ntp_timestamp=1 << 63, rtp_timestamp=1, packet_count=2, octet_count=3
    )
    sdes = SourceDescription(
        chunks=(SdesChunk(ssrc=0x5EED, items=((1, "gw-7f3a@pstn-bridge"), (6, "pstn-bridge"))),)
    )
    wire = build_rtcp([sr, sdes])
    assert len(wire) % 4 == 0
    parsed = parse_rtcp(wire)
    assert parsed == [sr, sdes]
    assert isinstance(parsed[1], SourceDescription)
    assert parsed[1].chunks[0].cname == "gw-7f3a@pstn-bridge"
    assert SdesChunk(ssrc=1).cname is None


@pytest.mark.parametrize("cname_length", range(0, 9))
def test_sdes_end_item_and_padding_for_every_alignment(cname_length):
    chunk = SdesChunk(ssrc=1, items=((1, "x" * cname_length),))
    wire = SourceDescription(chunks=(chunk, SdesChunk(ssrc=2))).serialize()
    assert len(wire) % 4 == 0
    assert parse_rtcp(wire) == [SourceDescription(chunks=(chunk, SdesChunk(ssrc=2)))]


def test_bye_with_and_without_reason():
    for bye in (
        Bye(sources=(1, 2)),
        Bye(sources=(1,), reason="call ended"),
        Bye(sources=(), reason=""),
        Bye(sources=(3,), reason="ÿ" * 127),
    ):
        wire = bye.serialize()
        assert len(wire) % 4 == 0
        assert parse_rtcp(wire) == [bye]
    assert Bye(sources=(0xDEADBEEF,), reason="bye").serialize() == bytes.fromhex(
        "81cb0002 deadbeef 03627965"
    )


def test_unknown_packet_types_are_kept_opaque():
    # An RFC 4585 generic NACK (PT 205, FMT 1) in a compound after an RR.
    nack = bytes.fromhex("81cd0003 00000007 0000000a 00120000")
    parsed = parse_rtcp(ReceiverReport(ssrc=7).serialize() + nack)
    assert parsed[1] == RtcpUnknown(packet_type=205, count=1, body=nack[4:])
    assert build_rtcp(parsed) == ReceiverReport(ssrc=7).serialize() + nack


def test_padding_on_the_last_packet_is_stripped():
    bye = bytes.fromhex("a1cb0002 deadbeef 00000004")  # P bit, 4 bytes of padding
    assert parse_rtcp(bye) == [Bye(sources=(0xDEADBEEF,))]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x80\xc9\x00", "header"),
        (bytes.fromhex("40c90001 00000007"), "version"),
        (bytes.fromhex("80c90002 00000007"), "length"),
        (bytes.fromhex("81c90001 00000007"), "report blocks"),
        (bytes.fromhex("80c80001 00000007"), "report blocks"),
        (bytes.fromhex("a1cb0001 00000000"), "padding"),
        (bytes.fromhex("a1cb0001 00000005"), "padding"),
        (bytes.fromhex("a0c90000"), "padding"),
        (
            bytes.fromhex("a1cb0002 deadbeef 00000004") + bytes.fromhex("80c90001 00000007"),
            "padding",
        ),
        (bytes.fromhex("81ca0001 00000001"), "END"),
        (bytes.fromhex("81ca0002 00000001 01050000"), "item"),
        (bytes.fromhex("82ca0002 00000001 00000000"), "chunk"),
        (bytes.fromhex("81cb0002 00000001 05000000"), "reason"),
        (bytes.fromhex("82cb0001 00000001"), "source list"),
        # found by the fuzzer (tests/fuzz/regressions/rtcp): padding that leaves a ragged
        # report extension, which build_rtcp could not write back
        (bytes.fromhex("a0c90002 00000007 00000003"), "whole number of words"),
        (bytes.fromhex("a0c80007 00000007") + bytes(20) + bytes.fromhex("00000001"), "words"),
    ],
)
def test_malformed_rtcp_is_refused(data, why):
    with pytest.raises(MalformedPacketError, match=why):
        parse_rtcp(data)


def test_building_refuses_out_of_range_fields():
    bad = [
        ReceiverReport(ssrc=2**32),
        ReceiverReport(ssrc=1, reports=(ReportBlock(ssrc=1),) * 32),
        ReceiverReport(ssrc=1, reports=(ReportBlock(ssrc=1, fraction_lost=256),)),
        ReceiverReport(ssrc=1, reports=(ReportBlock(ssrc=1, cumulative_lost=2**23),)),
        ReceiverReport(ssrc=1, reports=(ReportBlock(ssrc=1, jitter=-1),)),
        ReceiverReport(ssrc=1, extension=b"abc"),
        SenderReport(ssrc=1, ntp_timestamp=2**64, rtp_timestamp=0, packet_count=0, octet_count=0),
        SourceDescription(chunks=(SdesChunk(ssrc=1, items=((1, "x" * 256),)),)),
        SourceDescription(chunks=(SdesChunk(ssrc=1, items=((0, "x"),)),)),
        SourceDescription(chunks=(SdesChunk(ssrc=1),) * 32),
        Bye(sources=tuple(range(32))),
        Bye(sources=(1,), reason="x" * 256),
        RtcpUnknown(packet_type=204, count=32),
    ]
    for packet in bad:
        with pytest.raises(LocalMediaError):
            packet.serialize()


# --- NTP and round trip ------------------------------------------------------------------


def test_ntp_timestamps():
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(1.5) == ((2_208_988_801) << 32) | (1 << 31)
    assert ntp_middle32(0x0123_4567_89AB_CDEF) == 0x4567_89AB


def test_lsr_dlsr_and_round_trip_time():
    stats = ReceptionStats(ssrc=9, clock_rate=8000)
    stats.update(1, 160, 10.0)
    sent_at = 1_700_000_000.5  # the peer's wall clock when it sent its SR
    sr = SenderReport(
        ssrc=9, ntp_timestamp=ntp_timestamp(sent_at), rtp_timestamp=0, packet_count=1, octet_count=1
    )
    stats.sender_report_received(sr, arrival=20.0)  # our monotonic clock
    block = stats.report_block(now=21.25)
    assert block.last_sr == ntp_middle32(sr.ntp_timestamp)
    assert block.delay_since_last_sr == int(1.25 * 65536)
    # One-way delay 0.05 s each way: the SR's sender sees the block 0.1 + 1.25 s later.
    rtt = round_trip_time(block, sent_at + 0.1 + 1.25)
    assert rtt == pytest.approx(0.1, abs=2 / 65536)
    assert round_trip_time(ReportBlock(ssrc=1), 5.0) is None


# --- reception statistics ----------------------------------------------------------------


def reference_jitter(arrivals: list[float], timestamps: list[int], clock_rate: int = 8000) -> float:
    """RFC 3550 A.8 written with transit times, as in the RFC."""
    jitter, previous = 0.0, None
    for arrival, timestamp in zip(arrivals, timestamps, strict=True):
        transit = arrival * clock_rate - timestamp
        if previous is not None:
            jitter += (abs(transit - previous) - jitter) / 16
        previous = transit
    return jitter


def test_jitter_is_zero_for_a_steady_stream():
    stats = ReceptionStats(ssrc=1, clock_rate=8000)
    for i in range(50):
        stats.update(i, 1000 + 160 * i, 3.0 + 0.02 * i)
    assert stats.jitter == 0
    assert stats.jitter_seconds == pytest.approx(0, abs=1e-9)


def test_jitter_follows_rfc3550_a8_on_a_scripted_sequence():
    deviations_ms = [0, 5, 0, -3, 12, 2, 0, 0, 30, 1, 4, -2, 0, 0, 0, 7]
    arrivals = [100.0 + 0.02 * i + d / 1000 for i, d in enumerate(deviations_ms)]
    timestamps = [(2**32 - 800 + 160 * i) & 0xFFFFFFFF for i in range(len(arrivals))]
    stats = ReceptionStats(ssrc=1, clock_rate=8000)
    for i, (arrival, timestamp) in enumerate(zip(arrivals, timestamps, strict=True)):
        stats.update(i, timestamp, arrival)
    unwrapped = [2**32 - 800 + 160 * i for i in range(len(arrivals))]
    expected = reference_jitter(arrivals, unwrapped)
    assert stats.jitter_seconds * 8000 == pytest.approx(expected, rel=1e-9)
    assert stats.jitter == int(expected)
    # hand check of the first steps: |D| = 40 then 40 samples
    first = ReceptionStats(ssrc=1, clock_rate=8000)
    for i in range(3):
        first.update(i, 160 * i, 0.02 * i + (0.005 if i == 1 else 0))
    assert first.jitter_seconds * 8000 == pytest.approx(2.5 + (40 - 2.5) / 16)


def test_loss_and_fraction_lost_per_interval():
    stats = ReceptionStats(ssrc=5, clock_rate=8000)
    for seq in [s for s in range(10) if s not in (3, 7)]:
        stats.update(seq, 160 * seq, 0.02 * seq)
    block = stats.report_block(now=1.0)
    assert (stats.expected, stats.received, stats.cumulative_lost) == (10, 8, 2)
    assert block.fraction_lost == (2 << 8) // 10
    assert block.cumulative_lost == 2
    assert block.highest_sequence == 9
    assert (block.last_sr, block.delay_since_last_sr) == (0, 0)
    for seq in range(10, 20):
        stats.update(seq, 160 * seq, 0.02 * seq)
    block = stats.report_block(now=2.0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 2)
    # reordered packets arriving late fill the holes: lost goes down, interval fraction 0
    stats.update(3, 480, 2.1)
    stats.update(7, 1120, 2.1)
    block = stats.report_block(now=3.0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 0)


def test_duplicates_make_cumulative_lost_negative():
    stats = ReceptionStats(ssrc=5, clock_rate=8000)
    for seq in (0, 1, 1, 2):
        stats.update(seq, 160 * seq, 0.02 * seq)
    assert stats.cumulative_lost == -1
    assert stats.report_block(now=1).cumulative_lost == -1


def test_extended_sequence_across_wraparound():
    stats = ReceptionStats(ssrc=5, clock_rate=8000)
    for i in range(12):
        seq = (65530 + i) & 0xFFFF
        stats.update(seq, 160 * i, 0.02 * i)
    assert stats.extended_highest_sequence == 65536 + 5
    assert (stats.expected, stats.cumulative_lost) == (12, 0)
    # a misordered packet from before the wrap does not add a cycle
    stats.update(65534, 0, 1.0)
    assert stats.extended_highest_sequence == 65536 + 5


def test_big_jump_is_set_aside_until_confirmed():
    stats = ReceptionStats(ssrc=5, clock_rate=8000)
    for seq in range(5):
        stats.update(seq, 160 * seq, 0.02 * seq)
    assert stats.update(20000, 0, 0.2) is False
    assert stats.bad_sequence == 1
    assert stats.extended_highest_sequence == 4
    assert stats.update(20001, 160, 0.22) is True  # sequential: the source restarted
    assert stats.extended_highest_sequence == 20001
    assert (stats.expected, stats.received) == (1, 1)
    assert stats.update(5, 0, 0.3) is False  # a stray old packet is set aside again


def test_rtcp_interval():
    steady = rtcp_interval(
        members=2,
        senders=2,
        rtcp_bandwidth=400.0,
        we_sent=True,
        average_size=100.0,
        initial=False,
        random_factor=0.5,
    )
    assert steady == pytest.approx(5.0 / 1.21828, rel=1e-4)
    first = rtcp_interval(
        members=2,
        senders=2,
        rtcp_bandwidth=400.0,
        we_sent=True,
        average_size=100.0,
        initial=True,
        random_factor=0.0,
    )
    assert first == pytest.approx(2.5 * 0.5 / 1.21828, rel=1e-4)
    # a large conference where we are one of few senders: senders share 25% of the bandwidth
    crowded = rtcp_interval(
        members=1000,
        senders=1,
        rtcp_bandwidth=400.0,
        we_sent=False,
        average_size=100.0,
        initial=False,
        random_factor=0.5,
    )
    assert crowded == pytest.approx(100.0 * 999 / 300.0 / 1.21828, rel=1e-4)


# --- Hypothesis --------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-(2**23), 2**23 - 1),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
words = st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])
text = st.text(max_size=60)
rtcp_packets = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, 2**64 - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=st.lists(blocks, max_size=4).map(tuple),
        extension=words,
    ),
    st.builds(
        ReceiverReport, ssrc=u32, reports=st.lists(blocks, max_size=4).map(tuple), extension=words
    ),
    st.builds(
        SourceDescription,
        chunks=st.lists(
            st.builds(
                SdesChunk,
                ssrc=u32,
                items=st.lists(st.tuples(st.integers(1, 255), text), max_size=4).map(tuple),
            ),
            max_size=4,
        ).map(tuple),
    ),
    st.builds(Bye, sources=st.lists(u32, max_size=5).map(tuple), reason=st.none() | text),
    st.builds(
        RtcpUnknown,
        packet_type=st.integers(0, 255).filter(lambda t: not 200 <= t <= 203),
        count=st.integers(0, 31),
        body=words,
    ),
)


@FUZZ
@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_generated_compounds_round_trip(packets):
    wire = build_rtcp(packets)
    assert parse_rtcp(wire) == packets
    assert build_rtcp(parse_rtcp(wire)) == wire


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_malformed(data):
    try:
        parse_rtcp(data)
    except MalformedPacketError:
        pass
    except MediaError as exc:  # pragma: no cover
        raise AssertionError(f"unexpected error class {type(exc)}") from exc


@FUZZ
@given(st.lists(rtcp_packets, min_size=1, max_size=3), st.data())
def test_mutated_compounds_parse_or_raise_malformed(packets, data):
    wire = bytearray(build_rtcp(packets))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    with contextlib.suppress(MalformedPacketError):
        parse_rtcp(bytes(wire[:cut]))
