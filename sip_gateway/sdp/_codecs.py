"""Codec matching for offer/answer.

Theory of operation: an m-line lists payload types; ``a=rtpmap`` names the dynamic
ones and RFC 3551's static table names the rest. :func:`resolve` turns the formats of
an m-line into :class:`RtpMap` values in m-line order, skipping formats nobody named
and malformed rtpmaps, so that matching against a :class:`MediaProfile` is a plain
comparison of names, clock rates and channels.
"""

from __future__ import annotations

from collections.abc import Mapping

from sip_gateway.sdp.attributes import RtpMap
from sip_gateway.sdp.errors import SdpParseError
from sip_gateway.sdp.media_config import Codec, TelephoneEvent
from sip_gateway.sdp.profile import CodecSpec, MediaProfile
from sip_gateway.sdp.session import SdpMedia

TELEPHONE_EVENT = "telephone-event"


def _static(pt: int, name: str, rate: int, channels: int | None = None) -> tuple[int, RtpMap]:
    return pt, RtpMap(payload_type=pt, encoding=name, clock_rate=rate, channels=channels)


STATIC_PAYLOAD_TYPES: Mapping[int, RtpMap] = dict(
    [
        _static(0, "PCMU", 8000),
        _static(3, "GSM", 8000),
        _static(4, "G723", 8000),
        _static(5, "DVI4", 8000),
        _static(6, "DVI4", 16000),
        _static(7, "LPC", 8000),
        _static(8, "PCMA", 8000),
        _static(9, "G722", 8000),
        _static(10, "L16", 44100, 2),
        _static(11, "L16", 44100),
        _static(12, "QCELP", 8000),
        _static(13, "CN", 8000),
        _static(15, "G728", 8000),
        _static(18, "G729", 8000),
    ]
)
"""RFC 3551 section 6 audio payload types usable without an ``a=rtpmap``."""


def rtpmap_table(media: SdpMedia) -> dict[int, RtpMap]:
    """Return the media's well-formed rtpmaps by payload type (first one wins)."""
    table: dict[int, RtpMap] = {}
    for value in media.attribute_values("rtpmap"):
        try:
            rtpmap = RtpMap.parse(value)
        except SdpParseError:
            continue
        table.setdefault(rtpmap.payload_type, rtpmap)
    return table


def resolve(media: SdpMedia, fallback: Mapping[int, RtpMap] | None = None) -> list[RtpMap]:
    """Name every RTP format of the m-line, in m-line order.

    Args:
        media: the media description.
        fallback: rtpmaps to use when the m-line has none for a payload type (an
            answer may omit the rtpmaps of our offer).
    """
    table = rtpmap_table(media)
    result: list[RtpMap] = []
    for fmt in media.formats:
        if not (fmt.isascii() and fmt.isdigit() and len(fmt) <= 3):
            continue
        pt = int(fmt)
        rtpmap = table.get(pt) or (fallback or {}).get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
        if rtpmap is not None and pt <= 127:
            result.append(rtpmap)
    return result


def spec_for(rtpmap: RtpMap, profile: MediaProfile) -> CodecSpec | None:
    """Return the profile codec this rtpmap names, if any."""
    return next((spec for spec in profile.codecs if spec.matches(rtpmap)), None)


def to_codec(rtpmap: RtpMap, media: SdpMedia) -> Codec:
    """Build the negotiated codec, with the peer's fmtp for it."""
    return Codec(
        payload_type=rtpmap.payload_type,
        name=rtpmap.encoding,
        clock_rate=rtpmap.clock_rate,
        channels=rtpmap.channels or 1,
        fmtp=media.fmtp(str(rtpmap.payload_type)),
    )


def telephone_event(rtpmaps: list[RtpMap], clock_rate: int) -> TelephoneEvent | None:
    """Pick the telephone-event format with the codec's clock rate, else the first one."""
    events = [r for r in rtpmaps if r.encoding.lower() == TELEPHONE_EVENT]
    best = next((r for r in events if r.clock_rate == clock_rate), events[0] if events else None)
    if best is None:
        return None
    return TelephoneEvent(payload_type=best.payload_type, clock_rate=best.clock_rate)
