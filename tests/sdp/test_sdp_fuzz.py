"""Hypothesis: hostile SDP only ever raises SdpParseError/SdpError; models round-trip."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sip_gateway.sdp import (
    OPUS,
    PCMU,
    SUITES,
    Attribute,
    Bandwidth,
    Connection,
    CryptoAttribute,
    Fingerprint,
    IceParameters,
    KeyParams,
    LocalMedia,
    MediaProfile,
    MediaSecurity,
    Origin,
    SdpError,
    SdpMedia,
    SdpParseError,
    SdpSession,
    Timing,
    answer_offer,
    build_offer,
    parse_sdp,
    process_answer,
)

DATA = Path(__file__).parent / "data"
CAPTURES = [p.read_text() for p in sorted(DATA.glob("*.sdp"))]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GATEWAY = MediaProfile()
WEBRTC = MediaProfile(
    security=MediaSecurity.DTLS,
    codecs=(OPUS, PCMU),
    fingerprints=(Fingerprint.from_digest("sha-256", bytes(32)),),
)
LOCAL = LocalMedia(
    address="192.0.2.1", port=4000, session_id=1, ice=IceParameters(ufrag="u", pwd="p" * 22)
)


def zeros(n: int) -> bytes:
    return bytes(n)


def exercise(session: SdpSession) -> None:
    """Touch every typed helper: each may only raise SdpParseError."""
    for target in (session, *session.media):
        for name in ("direction", "fingerprints", "setup", "ice_ufrag", "ice_pwd"):
            with contextlib.suppress(SdpParseError):
                getattr(target, name)
    for media in session.media:
        for name in (
            "rtpmaps",
            "ptime",
            "maxptime",
            "rtcp",
            "candidates",
            "ssrcs",
            "extmaps",
            "crypto",
        ):
            with contextlib.suppress(SdpParseError):
                getattr(media, name)
    with contextlib.suppress(SdpParseError):
        _ = session.groups


def negotiate(session: SdpSession) -> None:
    """Answer with both profiles: a config or an SdpError, nothing else."""
    for profile in (GATEWAY, WEBRTC):
        try:
            answer, _ = answer_offer(session, profile, LOCAL, key_source=zeros)
        except SdpError as exc:
            event(f"{profile.security} refused: {type(exc).__name__}")
            continue
        event(f"{profile.security} answered")
        assert len(answer.media) == len(session.media)
        assert parse_sdp(answer.to_bytes()) == answer


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    try:
        parse_sdp(data)
    except SdpParseError as exc:
        assert exc.status_code == 400


LINE = st.tuples(st.sampled_from("vosiuepcbtrzkamx"), st.text(max_size=40)).map(
    lambda t: f"{t[0]}={t[1]}"
)


@FUZZ
@given(st.lists(LINE, max_size=12), st.sampled_from(["\r\n", "\n"]))
def test_sdp_like_text_parses_or_raises_parse_error(lines: list[str], eol: str) -> None:
    text = eol.join(["v=0", "o=- 1 1 IN IP4 h", "s=-", *lines]) + eol
    try:
        session = parse_sdp(text)
    except SdpParseError:
        return
    exercise(session)
    negotiate(session)
    assert parse_sdp(str(session)) == session


@st.composite
def mutated_capture(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(CAPTURES)).split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "truncate", "insert", "swap"]))
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "truncate":
            lines[index] = lines[index][: draw(st.integers(0, max(0, len(lines[index]) - 1)))]
        elif action == "insert":
            lines.insert(index, draw(st.text(max_size=30)))
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        if not lines:
            break
    return "\r\n".join(lines)


@FUZZ
@given(mutated_capture())
def test_mutated_captures_parse_negotiate_or_raise_sdp_errors(text: str) -> None:
    try:
        session = parse_sdp(text)
    except SdpParseError:
        event("parse error")
        return
    assert parse_sdp(str(session)) == session
    exercise(session)
    negotiate(session)


@FUZZ
@given(mutated_capture())
def test_answers_to_our_offer_raise_only_sdp_errors(text: str) -> None:
    offer = build_offer(GATEWAY, LOCAL, key_source=zeros)
    try:
        answer = parse_sdp(text)
        process_answer(offer, answer, GATEWAY)
    except SdpError:
        pass


@FUZZ
@given(st.text(max_size=120))
def test_any_crypto_value_parses_or_raises_parse_error(value: str) -> None:
    try:
        crypto = CryptoAttribute.parse(value)
    except SdpParseError:
        return
    assert CryptoAttribute.parse(str(crypto)) == crypto


# --- generated sessions round-trip ------------------------------------------------------

TOKEN = st.from_regex(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]{1,10}", fullmatch=True)
RAW = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"),
    max_size=16,
)
BIG = st.integers(0, 10**20 - 1)
CONNECTION = st.builds(Connection, network_type=TOKEN, address_type=TOKEN, address=TOKEN)
BANDWIDTH = st.builds(Bandwidth, type=TOKEN, value=BIG)
ATTRIBUTE = st.builds(Attribute, TOKEN, st.none() | RAW)
TIMING = st.builds(Timing, start=BIG, stop=BIG, repeats=st.lists(RAW, max_size=2).map(tuple))
ORIGIN = st.builds(
    Origin,
    username=TOKEN,
    session_id=TOKEN,
    session_version=BIG,
    network_type=TOKEN,
    address_type=TOKEN,
    address=TOKEN,
)
MEDIA = st.builds(
    SdpMedia,
    kind=TOKEN,
    port=st.integers(0, 65535),
    port_count=st.none() | st.integers(1, 65535),
    proto=st.lists(TOKEN, min_size=1, max_size=4).map("/".join),
    formats=st.lists(TOKEN, max_size=5),
    title=st.none() | RAW,
    connections=st.lists(CONNECTION, max_size=2),
    bandwidths=st.lists(BANDWIDTH, max_size=2),
    encryption_key=st.none() | RAW,
    attributes=st.lists(ATTRIBUTE, max_size=5),
)
SESSION = st.builds(
    SdpSession,
    origin=ORIGIN,
    session_name=RAW,
    info=st.none() | RAW,
    uri=st.none() | RAW,
    emails=st.lists(RAW, max_size=2),
    phones=st.lists(RAW, max_size=2),
    connection=st.none() | CONNECTION,
    bandwidths=st.lists(BANDWIDTH, max_size=2),
    timings=st.lists(TIMING, max_size=2),
    time_zones=st.none() | RAW,
    encryption_key=st.none() | RAW,
    attributes=st.lists(ATTRIBUTE, max_size=5),
    media=st.lists(MEDIA, max_size=3),
)


@settings(FUZZ, max_examples=200)
@given(SESSION)
def test_generated_sessions_round_trip(session: SdpSession) -> None:
    text = str(session)
    parsed = parse_sdp(text.encode())
    assert parsed == session
    assert str(parsed) == text


@st.composite
def crypto_attributes(draw: st.DrawFn) -> CryptoAttribute:
    suite = draw(st.sampled_from(sorted(SUITES)))
    length = SUITES[suite].key_salt_length
    params = []
    for _ in range(draw(st.integers(1, 3))):
        exponent = draw(st.integers(0, 64))
        lifetime = draw(st.none() | st.sampled_from([1 << exponent, exponent + 1]))
        power = lifetime is not None and lifetime.bit_count() == 1 and draw(st.booleans())
        mki_length = draw(st.none() | st.integers(1, 8))
        params.append(
            KeyParams(
                key_salt=draw(st.binary(min_size=length, max_size=length)),
                lifetime=lifetime,
                lifetime_power=power,
                mki=None if mki_length is None else draw(st.integers(0, 256**mki_length - 1)),
                mki_length=mki_length,
            )
        )
    session_params = draw(
        st.lists(st.sampled_from(["KDR=0", "WSH=64", "UNENCRYPTED_SRTCP"]), max_size=2)
    )
    tag = draw(st.integers(0, 999_999_999))
    return CryptoAttribute(
        tag=tag, suite=suite, key_params=tuple(params), session_params=tuple(session_params)
    )


@FUZZ
@given(crypto_attributes())
def test_generated_crypto_attributes_round_trip_and_hide_keys(crypto: CryptoAttribute) -> None:
    assert CryptoAttribute.parse(str(crypto)) == crypto
    text = repr(crypto)
    for params in crypto.key_params:
        assert base64.b64encode(params.key_salt).decode() not in text
