"""The RTCP half of a media session: when to report, what to say, what the peer said.

Theory of operation: :class:`RtcpReports` keeps the session's RTCP state: the RFC 3550
A.7 schedule (5% of the session bandwidth, the average compound size updated with
every compound sent or received, a random factor drawn from the injected source), the
compound to send (an SR when we sent RTP since the last report, else an RR; a report
block about the source we receive; SDES CNAME; BYE at the end), and what the peer's
reports tell (its SRs feed our LSR/DLSR, its blocks about us give the round trip).
The session protects, addresses and sends; this module builds plain RTCP only. No I/O,
no clock: times are arguments.
"""

from __future__ import annotations

from typing import Final

from ._setup import RandomSource
from .reception import ReceptionStats, round_trip_time, rtcp_interval
from .rtcp import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_timestamp,
)
from .rtp import RtpPacketizer

__all__ = ["RTCP_SHARE", "UDP_IP_OVERHEAD", "RtcpReports"]

RTCP_SHARE: Final = 0.05  # RFC 3550 6.2: 5% of the session bandwidth
UDP_IP_OVERHEAD: Final = 28


class RtcpReports:
    """RTCP timing, compounds and report reading of one session (module docstring).

    Attributes:
        cname: our SDES CNAME.
        next_at: when the next report is due (inf before the first schedule).
        sent: compounds sent.
        received: compounds received.
        round_trip_time: the last round-trip estimate, in seconds.
    """

    __slots__ = ("_rng", "_size", "cname", "next_at", "received", "round_trip_time", "sent")

    def __init__(self, cname: str, rng: RandomSource) -> None:
        """Nothing scheduled yet."""
        self.cname = cname
        self._rng = rng
        self.next_at = float("inf")
        self._size = 100.0 + UDP_IP_OVERHEAD
        self.sent = self.received = 0
        self.round_trip_time: float | None = None

    def schedule(
        self,
        now: float,
        *,
        initial: bool,
        frame_octets: int,
        ptime: float,
        heard: bool,
        sends: bool,
    ) -> None:
        """Set :attr:`next_at` by RFC 3550 A.7 (``frame_octets``: one RTP packet's bytes)."""
        session_bandwidth = (frame_octets + UDP_IP_OVERHEAD) / ptime * 2
        interval = rtcp_interval(
            members=1 + int(heard),
            senders=int(sends) + int(heard),
            rtcp_bandwidth=session_bandwidth * RTCP_SHARE,
            we_sent=sends,
            average_size=self._size,
            initial=initial,
            random_factor=self._rng.random(),
        )
        self.next_at = now + interval

    def compound(
        self,
        now: float,
        *,
        ssrc: int,
        reception: ReceptionStats | None,
        sender: tuple[RtpPacketizer, int] | None,
        unix_offset: float,
        bye: bool,
    ) -> bytes:
        """The plain compound to send now.

        Args:
            now: the current time.
            ssrc: ours.
            reception: the source we receive, if any (its report block goes in).
            sender: our packetizer and the RTP timestamp of ``now``, when we sent RTP
                since the last report (an SR then), else None (an RR).
            unix_offset: wall-clock seconds minus ``now`` (NTP timestamp).
            bye: end with a BYE.
        """
        blocks = (reception.report_block(now),) if reception is not None else ()
        report: RtcpPacket
        if sender is not None:
            packetizer, rtp_now = sender
            report = SenderReport(
                ssrc=ssrc,
                ntp_timestamp=ntp_timestamp(now + unix_offset),
                rtp_timestamp=rtp_now & 0xFFFFFFFF,
                packet_count=packetizer.packet_count,
                octet_count=packetizer.octet_count,
                reports=blocks,
            )
        else:
            report = ReceiverReport(ssrc=ssrc, reports=blocks)
        sdes = SourceDescription(chunks=(SdesChunk(ssrc=ssrc, items=((SDES_CNAME, self.cname),)),))
        return build_rtcp([report, sdes, *([Bye(sources=(ssrc,))] if bye else [])])

    def account(self, size: int, *, sent: bool) -> None:
        """A protected compound of ``size`` bytes went out (or came in): A.7's average."""
        self._size += (size + UDP_IP_OVERHEAD - self._size) / 16
        if sent:
            self.sent += 1
        else:
            self.received += 1

    def read(
        self,
        packets: tuple[RtcpPacket, ...],
        now: float,
        *,
        local_ssrc: int,
        remote_ssrc: int | None,
        reception: ReceptionStats | None,
        unix_offset: float,
    ) -> float | None:
        """Take the peer's reports: its SRs (for our LSR/DLSR), its blocks about us.

        Returns:
            The round trip this compound gave, if any (also kept in
            :attr:`round_trip_time`).
        """
        rtt = None
        for packet in packets:
            if not isinstance(packet, SenderReport | ReceiverReport):
                continue
            if isinstance(packet, SenderReport) and packet.ssrc == remote_ssrc:
                assert reception is not None
                reception.sender_report_received(packet, now)
            for block in packet.reports:
                if block.ssrc == local_ssrc:
                    rtt = round_trip_time(block, now + unix_offset) or rtt
        if rtt is not None:
            self.round_trip_time = rtt
        return rtt
