"""The media plane's control protocol: bytes in, messages out, exact round trips, garbage."""

from __future__ import annotations

import hashlib
import secrets
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.media._srtp_path import WebRtcLegStats
from bridge.media.control import (
    MAX_FRAME,
    ApplyGateway,
    ApplyWebRtc,
    ChooseWebRtc,
    CloseMedia,
    Configure,
    ControlDecoder,
    ControlMessage,
    ControlProtocolError,
    Done,
    EventPushed,
    MediaSnapshot,
    NewWebRtcPort,
    Opened,
    Refused,
    ResourcesPushed,
    SendDigit,
    StatsPushed,
    WebRtcPortMade,
    WorkerResources,
    encode,
)
from bridge.media.events import DigitRelayed, MediaFailed, WebRtcConnected
from bridge.media.pipeline import MediaCounters, PipelineConfig
from bridge.media.transcode import OpusEncoderConfig
from bridge.media.webrtc_leg import DtlsFacts, WebRtcLegConfig
from sip_gateway.media.events import MediaStats
from sip_gateway.sdp import (
    OPUS,
    PCMU,
    Candidate,
    Fingerprint,
    IceParameters,
    LocalMedia,
    MediaConfig,
    MediaProfile,
    MediaSecurity,
    SdesCrypto,
    answer_offer,
    build_offer,
    parse_sdp,
    process_answer,
)

FINGERPRINT = Fingerprint.from_digest("sha-256", hashlib.sha256(b"cert").digest())


def _ice(ufrag: str, port: int) -> IceParameters:
    candidate = Candidate(
        foundation="1",
        component=1,
        transport="udp",
        priority=2130706431,
        address="127.0.0.1",
        port=port,
        type="host",
    )
    return IceParameters(ufrag=ufrag, pwd=secrets.token_hex(12), candidates=(candidate,))


def sdes_configs(suite: str = "AEAD_AES_256_GCM") -> tuple[MediaConfig, MediaConfig]:
    """A real SDES offer/answer (fresh keys) as the trunk negotiates it."""
    profile = MediaProfile(crypto_suites=(suite,))
    offer = build_offer(
        profile,
        LocalMedia(address="127.0.0.1", port=4000, session_id=1),
        key_source=secrets.token_bytes,
    )
    answer, answerer = answer_offer(
        parse_sdp(offer.to_bytes()),
        profile,
        LocalMedia(address="127.0.0.1", port=5000, session_id=2),
        key_source=secrets.token_bytes,
    )
    return process_answer(offer, parse_sdp(answer.to_bytes()), profile), answerer


def dtls_config() -> MediaConfig:
    """A real DTLS-SRTP answer with ICE, as the browser leg negotiates it."""
    profile = MediaProfile(
        security=MediaSecurity.DTLS, codecs=(OPUS, PCMU), fingerprints=(FINGERPRINT,)
    )
    offer = build_offer(
        profile,
        LocalMedia(address="127.0.0.1", port=4000, session_id=1, ice=_ice("abcd", 4000)),
        key_source=secrets.token_bytes,
    )
    _answer, config = answer_offer(
        parse_sdp(offer.to_bytes()),
        profile,
        LocalMedia(address="127.0.0.1", port=5000, session_id=2, ice=_ice("efgh", 5000)),
        key_source=secrets.token_bytes,
    )
    return config


def round_trip(message: ControlMessage) -> ControlMessage:
    decoder = ControlDecoder()
    decoder.feed(encode(message))
    decoded = decoder.next_message()
    assert decoder.next_message() is None
    assert decoder.pending == 0
    assert decoded is not None
    return decoded


def test_sdes_configs_with_key_material_round_trip_exactly() -> None:
    for suite in ("AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"):
        for config in sdes_configs(suite):
            message = ApplyGateway(call_id="c-1", config=config)
            decoded = round_trip(message)
            assert decoded == message
            assert isinstance(decoded, ApplyGateway)
            crypto = decoded.config.crypto
            assert isinstance(crypto, SdesCrypto)
            assert isinstance(config.crypto, SdesCrypto)
            assert crypto.local_key == config.crypto.local_key
            assert crypto.remote_key == config.crypto.remote_key


def test_key_material_never_shows_in_repr() -> None:
    config, _ = sdes_configs()
    assert isinstance(config.crypto, SdesCrypto)
    message = ApplyGateway(call_id="c-1", config=config)
    text = repr(round_trip(message))
    for key in (config.crypto.local_key, config.crypto.remote_key):
        assert key.hex() not in text.lower()
        assert repr(key) not in text


def test_dtls_config_ice_and_facts_round_trip() -> None:
    config = dtls_config()
    assert config.remote_ice is not None
    for message in (
        ApplyWebRtc(call_id="c-1", port_id=3, config=config),
        WebRtcPortMade(
            request_id=7,
            port_id=3,
            local_address=("127.0.0.1", 5000),
            local_ice=_ice("efgh", 5000),
            fingerprints=(FINGERPRINT,),
        ),
        EventPushed(
            call_id="c-1",
            event=WebRtcConnected(
                facts=DtlsFacts(dtls_version="DTLSv1.2", fingerprint_matches_signaling=True)
            ),
        ),
    ):
        assert round_trip(message) == message


def test_settings_stats_and_events_round_trip() -> None:
    messages: list[ControlMessage] = [
        Configure(
            pipeline=PipelineConfig(
                webrtc=WebRtcLegConfig(turn_password="s3cret", host_addresses=("127.0.0.1",)),
                opus=OpusEncoderConfig(complexity=2),
                gateway_port_range=(40000, 40999),
            ),
            stats_interval=0.5,
        ),
        Opened(request_id=1, gateway_address=("127.0.0.1", 40000)),
        NewWebRtcPort(request_id=2, call_id="c-1", controlling=True),
        ChooseWebRtc(request_id=3, call_id="c-1", port_id=1),
        SendDigit(call_id="c-1", digit="5", duration_ms=100, via="info"),
        CloseMedia(request_id=4, call_id="c-1"),
        Done(request_id=4),
        Refused(request_id=5, kind="webrtc", reason="no-candidates", detail="none bound"),
        EventPushed(call_id="c-1", event=MediaFailed(leg="webrtc", reason="ice-failed")),
        EventPushed(call_id="c-1", event=DigitRelayed(digit="#", toward="gateway", via="rtp")),
        StatsPushed(
            call_id="c-1",
            snapshot=MediaSnapshot(
                counters=MediaCounters(browser_packets=5, gateway_gaps=1),
                webrtc=WebRtcLegStats(rtp_packets_in=5),
                gateway=MediaStats(
                    packets_received=9,
                    dropped={"auth_failed": 2},
                    jitter_ms=1.5,
                    remote_address=("127.0.0.1", 4000),
                    round_trip_time=None,
                ),
                facts=DtlsFacts(srtp_profile="SRTP_AEAD_AES_128_GCM"),
            ),
        ),
        ResourcesPushed(resources=WorkerResources(calls=1, rtp_sockets=2, tasks=9)),
    ]
    stream = b"".join(encode(m) for m in messages)
    decoder = ControlDecoder()
    for i in range(len(stream)):  # byte by byte
        decoder.feed(stream[i : i + 1])
    decoded = []
    while (message := decoder.next_message()) is not None:
        decoded.append(message)
    assert decoded == messages


def test_a_frame_split_anywhere_decodes_once_whole() -> None:
    frame = encode(Done(request_id=9))
    for cut in range(len(frame) + 1):
        decoder = ControlDecoder()
        decoder.feed(frame[:cut])
        assert decoder.next_message() is None or cut == len(frame)
        decoder.feed(frame[cut:])
        if cut < len(frame):
            assert decoder.next_message() == Done(request_id=9)


def _frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",  # not UTF-8
        b"{",  # not JSON
        b"[]",  # not an object
        b'{"#":"Popen","f":{}}',  # not a registered type
        b'{"#":"MediaConfig","f":{}}',  # a registered type but not a message
        b'{"#":"Done","f":{"request_id":1,"extra":2}}',  # a field the type lacks
        b'{"#":"Done","f":[]}',  # fields not an object
        b'{"#":"Done","f":{"request_id":{"#x":1}}}',  # unknown tag
        b'{"#":"Done","f":{"request_id":{"#b":"!!"}}}',  # bad base64
        b'{"#":"Done","f":{"request_id":{"#e":"Direction","v":"sideways"}}}',  # bad enum value
        b'{"#":"Done","f":{"request_id":{"#e":"Done","v":1}}}',  # not an enum
        b'{"#":"Done","f":{"request_id":' + b"[" * 100000 + b"]" * 100000 + b"}}",  # deep
        b'{"#":"SendDigit","f":{"call_id":"c"}}',  # fields missing
    ],
)
def test_garbage_raises_the_package_error(body: bytes) -> None:
    decoder = ControlDecoder()
    with pytest.raises(ControlProtocolError):
        decoder.feed(_frame(body))


def test_an_oversized_frame_is_refused_from_its_header() -> None:
    decoder = ControlDecoder()
    with pytest.raises(ControlProtocolError):
        decoder.feed(struct.pack("!I", MAX_FRAME + 1))


def test_an_unregistered_value_cannot_be_encoded() -> None:
    with pytest.raises(TypeError):
        encode(EventPushed(call_id="c", event=object()))  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_the_package_error(data: bytes) -> None:
    decoder = ControlDecoder()
    try:
        decoder.feed(data)
    except ControlProtocolError:
        return
    while decoder.next_message() is not None:
        pass


_text = st.text(max_size=20)
_counts = st.integers(min_value=0, max_value=2**40)


@given(
    counters=st.builds(MediaCounters, browser_packets=_counts, gateway_frames=_counts),
    stats=st.builds(
        MediaStats,
        packets_received=_counts,
        dropped=st.dictionaries(_text, _counts, max_size=3),
        jitter_ms=st.floats(allow_nan=False, allow_infinity=False),
        round_trip_time=st.none() | st.floats(allow_nan=False, allow_infinity=False),
        remote_address=st.none() | st.tuples(_text, st.integers(0, 65535)),
        suite=_text,
    ),
    facts=st.none() | st.builds(DtlsFacts, role=st.none() | _text, cipher=st.none() | _text),
    call_id=_text,
)
def test_snapshots_round_trip(
    counters: MediaCounters, stats: MediaStats, facts: DtlsFacts | None, call_id: str
) -> None:
    message = StatsPushed(
        call_id=call_id, snapshot=MediaSnapshot(counters=counters, gateway=stats, facts=facts)
    )
    assert round_trip(message) == message


@given(
    digit=_text,
    duration=st.integers(-(2**63), 2**63),
    via=_text,
    kind=_text,
    detail=_text,
)
def test_requests_and_refusals_round_trip(
    digit: str, duration: int, via: str, kind: str, detail: str
) -> None:
    for message in (
        SendDigit(call_id=digit, digit=digit, duration_ms=duration, via=via),
        Refused(request_id=duration, kind=kind, reason=via, detail=detail),
    ):
        assert round_trip(message) == message


@given(st.data())
def test_mutated_frames_decode_or_raise_the_package_error(data: st.DataObject) -> None:
    config, _ = sdes_configs()
    body = bytearray(encode(ApplyGateway(call_id="c", config=config))[4:])
    index = data.draw(st.integers(0, len(body) - 1))
    body[index] = data.draw(st.integers(0, 255))
    decoder = ControlDecoder()
    try:
        decoder.feed(_frame(bytes(body)))
    except ControlProtocolError:
        return
    assert isinstance(decoder.next_message(), ControlMessage)


def test_numpy_numbers_cross_as_plain_numbers() -> None:
    import numpy as np

    message = StatsPushed(
        call_id="c",
        snapshot=MediaSnapshot(
            counters=MediaCounters(browser_packets=np.int64(7)),  # type: ignore[arg-type]
            gateway=MediaStats(jitter_ms=np.float32(1.5)),  # type: ignore[arg-type]
        ),
    )
    decoded = round_trip(message)
    assert isinstance(decoded, StatsPushed)
    assert decoded.snapshot.counters.browser_packets == 7
    assert decoded.snapshot.gateway is not None and decoded.snapshot.gateway.jitter_ms == 1.5
