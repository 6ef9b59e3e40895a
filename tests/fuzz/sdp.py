"""Fuzz target: SDP bodies (``parse_sdp``) and what the legs do with them (offer/answer).

Property: any bytes either raise :class:`SdpParseError` or give an :class:`SdpSession`
that

* re-parses from its own ``str()`` to an equal session, and ``str()`` of that is a
  fixed point;
* raises nothing but :class:`SdpParseError` from any typed helper (``rtpmaps``,
  ``crypto``, ``candidates``, ``fingerprints``, ``groups`` ...);
* as an offer, is answered or refused with :class:`SdpError` by both of the bridge's
  media profiles (SDES on the gateway leg, DTLS on the WebRTC leg), again as a re-offer
  on the negotiated config, and each answer re-parses;
* as an answer to our own offer, gives a config or :class:`SdpError`.

Seeds: the real SDPs of ``tests/sdp/data`` and the SDP bodies of RFC 4475.

Run: ``python -m tests.fuzz.sdp -max_total_time=60 [corpus_dir]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.fuzz.harness import instrumented, main, sdp_captures

with instrumented(__name__, "sip_gateway.sdp"):
    from sip_gateway.sdp import (
        OPUS,
        PCMU,
        Fingerprint,
        IceParameters,
        LocalMedia,
        MediaProfile,
        MediaSecurity,
        SdpError,
        SdpParseError,
        SdpSession,
        answer_offer,
        build_offer,
        parse_sdp,
        process_answer,
    )

TARGET = "sdp"
GATEWAY = MediaProfile()
WEBRTC = MediaProfile(
    security=MediaSecurity.DTLS,
    codecs=(OPUS, PCMU),
    fingerprints=(Fingerprint.from_digest("sha-256", bytes(32)),),
)
LOCAL = LocalMedia(
    address="192.0.2.1", port=4000, session_id=1, ice=IceParameters(ufrag="u", pwd="p" * 22)
)
_SESSION_HELPERS = ("direction", "fingerprints", "setup", "ice_ufrag", "ice_pwd", "groups")
_MEDIA_HELPERS = (
    *_SESSION_HELPERS[:-1],
    "rtpmaps",
    "ptime",
    "maxptime",
    "rtcp",
    "rtcp_mux",
    "mid",
    "candidates",
    "ssrcs",
    "extmaps",
    "crypto",
)


def zeros(size: int) -> bytes:
    """A deterministic key source."""
    return bytes(size)


def one_input(data: bytes) -> None:
    """The property for one input (raises AssertionError or the crash itself)."""
    try:
        session = parse_sdp(data)
    except SdpParseError as exc:
        assert exc.status_code == 400
        return
    text = str(session)
    again = parse_sdp(text)
    assert again == session, "parse(str(s)) != s"
    assert str(again) == text, "str() is not a fixed point"
    exercise(session)
    negotiate(session)


def exercise(session: SdpSession) -> None:
    """Every typed helper: a value or SdpParseError."""
    targets: list[tuple[object, tuple[str, ...]]] = [(session, _SESSION_HELPERS)]
    targets += [(media, _MEDIA_HELPERS) for media in session.media]
    for target, names in targets:
        for name in names:
            with contextlib.suppress(SdpParseError):
                getattr(target, name)
    for media in session.media:
        for function in (session.connection_for, session.direction_of, session.fingerprints_of):
            with contextlib.suppress(SdpParseError):
                function(media)


def negotiate(session: SdpSession) -> None:
    """Answer as both legs, re-answer on the result; process it as an answer to us."""
    for profile in (GATEWAY, WEBRTC):
        try:
            answer, config = answer_offer(session, profile, LOCAL, key_source=zeros)
        except SdpError:
            continue
        assert parse_sdp(answer.to_bytes()) == answer, "our answer does not re-parse"
        with contextlib.suppress(SdpError):
            answer_offer(session, profile, LOCAL, key_source=zeros, previous=config)
        offer = build_offer(profile, LOCAL, key_source=zeros)
        with contextlib.suppress(SdpError):
            process_answer(offer, session, profile)


def seeds() -> Iterator[bytes]:
    """The captures, CRLF and bare LF."""
    for capture in sdp_captures():
        yield capture
        yield capture.replace(b"\r\n", b"\n")


if __name__ == "__main__":
    main(TARGET, one_input, seeds)
