"""Reception statistics and report timing (RFC 3550 appendix A.1, A.3, A.7, A.8).

Theory of operation: :class:`ReceptionStats` keeps what a receiver reports about one
source: the extended highest sequence number with the A.1 validation (dropouts,
misordering, restarts), the cumulative and interval loss of A.3, the interarrival
jitter of A.8, and LSR/DLSR so the sender can estimate the round trip
(:func:`round_trip_time`). :func:`rtcp_interval` is the A.7 transmission interval with
its random factor passed in. The wire format lives in :mod:`sip_gateway.media.rtcp`.

No I/O, no clock, no randomness: arrival times are arguments (seconds on any monotonic
clock), wall-clock seconds are arguments where NTP time is needed, and the random
factor of the interval comes from the caller's injected source.
"""

from __future__ import annotations

import math
from typing import Final

from .rtcp import ReportBlock, SenderReport, ntp_middle32, ntp_timestamp

__all__ = [
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "RTCP_MIN_TIME",
    "ReceptionStats",
    "round_trip_time",
    "rtcp_interval",
]

MAX_DROPOUT: Final = 3000  # RFC 3550 A.1
MAX_MISORDER: Final = 100
RTCP_MIN_TIME: Final = 5.0  # RFC 3550 6.2
_COMPENSATION: Final = math.e - 1.5  # RFC 3550 A.7


class ReceptionStats:
    """What we report about one source we receive (RFC 3550 A.1, A.3, A.8).

    Feed every RTP packet of the source to :meth:`update`; build the report block of
    the next SR/RR with :meth:`report_block`; record the source's SRs with
    :meth:`sender_report_received` so the block carries LSR and DLSR.

    Attributes:
        ssrc: the source.
        clock_rate: its RTP clock rate, in Hz.
        received: packets counted (duplicates included, as RFC 3550 does).
        bad_sequence: packets set aside by the A.1 dropout rule.
    """

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_cycles",
        "_expected_prior",
        "_jitter",
        "_last_arrival",
        "_last_sr",
        "_last_sr_arrival",
        "_last_timestamp",
        "_max_seq",
        "_received_prior",
        "bad_sequence",
        "clock_rate",
        "received",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        """Start with no packets; the first :meth:`update` sets the base sequence."""
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.received = 0
        self.bad_sequence = 0
        self._base_seq = self._max_seq = self._cycles = 0
        self._bad_seq = -1
        self._expected_prior = self._received_prior = 0
        self._jitter = 0.0
        self._last_arrival: float | None = None
        self._last_timestamp = 0
        self._last_sr = 0
        self._last_sr_arrival = 0.0

    def update(self, sequence: int, timestamp: int, arrival: float) -> bool:
        """Account one received packet.

        Args:
            sequence: its RTP sequence number.
            timestamp: its RTP timestamp.
            arrival: its arrival time in seconds (any monotonic origin).

        Returns:
            False when A.1 sets the packet aside (a jump beyond MAX_DROPOUT that is
            not yet confirmed by a second, sequential packet), True otherwise.
        """
        last_arrival, max_seq = self._last_arrival, self._max_seq
        if last_arrival is None:
            self._restart(sequence)
        elif 0 < sequence - max_seq < MAX_DROPOUT:  # the next packet(s) in order, no wrap
            self._max_seq = sequence
        elif not self._accept_sequence(sequence):
            self.bad_sequence += 1
            return False
        if last_arrival is not None:  # A.8 interarrival jitter, inline (once per packet)
            elapsed = ((timestamp - self._last_timestamp + 2**31) & 0xFFFFFFFF) - 2**31
            difference = (arrival - last_arrival) * self.clock_rate - elapsed
            self._jitter += (abs(difference) - self._jitter) / 16
        self.received += 1
        self._last_arrival = arrival
        self._last_timestamp = timestamp
        return True

    def _restart(self, sequence: int) -> None:
        self._base_seq = self._max_seq = sequence
        self._cycles = 0
        self._bad_seq = -1
        self.received = self._expected_prior = self._received_prior = 0

    def _accept_sequence(self, sequence: int) -> bool:
        delta = (sequence - self._max_seq) & 0xFFFF
        if delta < MAX_DROPOUT:
            if sequence < self._max_seq:
                self._cycles += 0x10000
            self._max_seq = sequence
        elif delta <= 0x10000 - MAX_MISORDER:
            if sequence != self._bad_seq:
                self._bad_seq = (sequence + 1) & 0xFFFF
                return False
            self._restart(sequence)  # two sequential packets: the source restarted
        return True  # in order, or a duplicate / reordered packet

    @property
    def extended_highest_sequence(self) -> int:
        """The highest sequence number received, extended with wrap cycles (32 bits)."""
        return (self._cycles + self._max_seq) & 0xFFFFFFFF

    @property
    def expected(self) -> int:
        """Packets expected since the first one (A.3)."""
        return self._cycles + self._max_seq - self._base_seq + 1 if self.received else 0

    @property
    def cumulative_lost(self) -> int:
        """Packets lost since the start: expected - received (negative with duplicates)."""
        return self.expected - self.received

    @property
    def jitter(self) -> int:
        """The interarrival jitter estimate, in timestamp units (as reported)."""
        return int(self._jitter)

    @property
    def jitter_seconds(self) -> float:
        """The interarrival jitter estimate, in seconds."""
        return self._jitter / self.clock_rate

    def sender_report_received(self, report: SenderReport, arrival: float) -> None:
        """Remember the source's last SR for LSR/DLSR (arrival on the same clock)."""
        self._last_sr = ntp_middle32(report.ntp_timestamp)
        self._last_sr_arrival = arrival

    def report_block(self, now: float) -> ReportBlock:
        """The report block for an SR/RR sent now; starts a new loss interval (A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (self.received - self._received_prior)
        self._expected_prior, self._received_prior = expected, self.received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        dlsr = 0
        if self._last_sr:
            dlsr = max(0, int((now - self._last_sr_arrival) * 65536)) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=max(-(2**23), min(self.cumulative_lost, 2**23 - 1)),
            highest_sequence=self.extended_highest_sequence,
            jitter=self.jitter,
            last_sr=self._last_sr,
            delay_since_last_sr=dlsr,
        )


def round_trip_time(block: ReportBlock, unix_seconds: float) -> float | None:
    """The round-trip time (RFC 3550 6.4.1) from a block about our SR, received now.

    Returns:
        Seconds, or None when the block does not refer to an SR (LSR 0).
    """
    if block.last_sr == 0:
        return None
    arrival = ntp_middle32(ntp_timestamp(unix_seconds))
    return ((arrival - block.last_sr - block.delay_since_last_sr) & 0xFFFFFFFF) / 65536


def rtcp_interval(
    *,
    members: int,
    senders: int,
    rtcp_bandwidth: float,
    we_sent: bool,
    average_size: float,
    initial: bool,
    random_factor: float,
) -> float:
    """The RFC 3550 A.7 RTCP transmission interval, in seconds.

    Args:
        members: participants in the session, including us.
        senders: participants that sent RTP recently, including us.
        rtcp_bandwidth: the RTCP share of the session bandwidth, octets per second
            (5% of the session bandwidth by default).
        we_sent: whether we sent RTP since the last report.
        average_size: the average compound RTCP size, octets (with UDP/IP overhead).
        initial: True before the first report (half the minimum interval).
        random_factor: a uniform draw from [0, 1) from the caller's injected source.
    """
    minimum = RTCP_MIN_TIME / 2 if initial else RTCP_MIN_TIME
    count = members
    if 0 < senders <= members * 0.25:
        if we_sent:
            rtcp_bandwidth *= 0.25
            count = senders
        else:
            rtcp_bandwidth *= 0.75
            count = members - senders
    interval = max(average_size * count / rtcp_bandwidth, minimum)
    return interval * (random_factor + 0.5) / _COMPENSATION
