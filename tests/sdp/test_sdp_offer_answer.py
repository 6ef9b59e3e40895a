"""RFC 3264 offer/answer: SDES and DTLS legs, policy refusals, re-offers."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest

from sip_gateway.sdp import (
    OPUS,
    PCMA,
    PCMU,
    Candidate,
    CodecSpec,
    Direction,
    DtlsCrypto,
    Fingerprint,
    IceParameters,
    LocalMedia,
    MediaConfig,
    MediaProfile,
    MediaSecurity,
    SdesCrypto,
    SdpError,
    SdpParseError,
    SdpSession,
    SetupRole,
    answer_offer,
    build_offer,
    parse_sdp,
    process_answer,
)
from sip_gateway.sdp.profile import OPUS_FMTP
from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError

DATA = Path(__file__).parent / "data"
GATEWAY = MediaProfile()
LOCAL = LocalMedia(address="192.0.2.10", port=30000, session_id=1234)
OUR_FINGERPRINT = Fingerprint.from_digest("sha-256", bytes(range(32)))
WEBRTC = MediaProfile(
    security=MediaSecurity.DTLS, codecs=(OPUS, PCMU, PCMA), fingerprints=(OUR_FINGERPRINT,)
)
HOST = Candidate(
    foundation="1",
    component=1,
    transport="udp",
    priority=2130706431,
    address="192.0.2.10",
    port=30000,
    type="host",
)
WEBRTC_LOCAL = replace(
    LOCAL, ice=IceParameters(ufrag="brdg", pwd="bridge-ice-password-123", candidates=(HOST,))
)


class Keys:
    """Deterministic key source: consecutive byte values, records each request."""

    def __init__(self) -> None:
        self.requests: list[int] = []
        self.next = 0

    def __call__(self, n: int) -> bytes:
        self.requests.append(n)
        data = bytes((self.next + i) % 256 for i in range(n))
        self.next += n
        return data


def load(name: str) -> SdpSession:
    return parse_sdp((DATA / name).read_bytes())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sdes_offer(*crypto: str, proto: str = "RTP/SAVP", formats: str = "0 8 101") -> SdpSession:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 198.51.100.1",
        "s=-",
        "c=IN IP4 198.51.100.1",
        "t=0 0",
        f"m=audio 5000 {proto} {formats}",
        "a=rtpmap:101 telephone-event/8000",
        *(f"a=crypto:{c}" for c in crypto),
    ]
    return parse_sdp("\r\n".join(lines) + "\r\n")


KEY30 = b64(bytes(range(100, 130)))
LINE_80 = f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"


# --- offers -----------------------------------------------------------------------


def test_gateway_offer_is_golden() -> None:
    keys = Keys()
    offer = build_offer(GATEWAY, LOCAL, key_source=keys)
    assert keys.requests == [44, 28, 30]
    assert str(offer) == (
        "v=0\r\n"
        "o=- 1234 0 IN IP4 192.0.2.10\r\n"
        "s=pstn-bridge\r\n"
        "c=IN IP4 192.0.2.10\r\n"
        "t=0 0\r\n"
        "m=audio 30000 RTP/SAVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        f"a=crypto:1 AEAD_AES_256_GCM inline:{b64(bytes(range(44)))}\r\n"
        f"a=crypto:2 AEAD_AES_128_GCM inline:{b64(bytes(range(44, 72)))}\r\n"
        f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{b64(bytes(range(72, 102)))}\r\n"
        "a=rtcp-mux\r\n"
        "a=sendrecv\r\n"
    )
    assert parse_sdp(offer.to_bytes()) == offer


def test_offer_suite_order_and_options_are_configurable() -> None:
    profile = MediaProfile(
        crypto_suites=("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"),
        codecs=(PCMA,),
        telephone_event=False,
        rtcp_mux=False,
        ptime=30,
    )
    offer = build_offer(profile, LOCAL, key_source=Keys(), direction=Direction.SENDONLY)
    media = offer.media[0]
    assert media.formats == ["8"]
    assert [(c.tag, c.suite) for c in media.crypto] == [
        (1, "AES_CM_128_HMAC_SHA1_80"),
        (2, "AEAD_AES_128_GCM"),
    ]
    assert not media.rtcp_mux and media.ptime == 30
    assert media.direction is Direction.SENDONLY


def test_ipv6_offer() -> None:
    offer = build_offer(GATEWAY, replace(LOCAL, address="2001:db8::10"), key_source=Keys())
    assert str(offer.origin) == "- 1234 0 IN IP6 2001:db8::10"
    assert str(offer.connection) == "IN IP6 2001:db8::10"


def test_key_source_must_return_the_requested_length() -> None:
    with pytest.raises(LocalProtocolError, match="30 bytes"):
        build_offer(
            MediaProfile(crypto_suites=("AES_CM_128_HMAC_SHA1_80",)),
            LOCAL,
            key_source=lambda n: bytes(n - 1),
        )


# --- answering SDES offers ----------------------------------------------------------


def test_answer_baresip_offer() -> None:
    offer = load("baresip_sdes_offer.sdp")
    keys = Keys()
    answer, config = answer_offer(offer, GATEWAY, LOCAL, key_source=keys)
    assert keys.requests == [30]
    remote_line = offer.media[0].crypto[0]
    assert isinstance(config.crypto, SdesCrypto)
    assert (config.crypto.tag, config.crypto.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
    assert config.crypto.remote_key == remote_line.key_salt
    assert config.crypto.local_key == bytes(range(30))
    assert [str(c) for c in config.codecs] == ["PCMU/8000"]
    assert config.codec.payload_type == 0
    assert config.telephone_event is not None and config.telephone_event.payload_type == 101
    assert config.ptime == 20
    assert config.remote_address == ("192.0.2.33", 10624)
    assert config.remote_rtcp_address == ("192.0.2.33", 10625)
    assert not config.rtcp_mux
    assert config.direction is Direction.SENDRECV
    assert str(answer) == (
        "v=0\r\n"
        "o=- 1234 0 IN IP4 192.0.2.10\r\n"
        "s=pstn-bridge\r\n"
        "c=IN IP4 192.0.2.10\r\n"
        "t=0 0\r\n"
        "m=audio 30000 RTP/SAVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{b64(bytes(range(30)))}\r\n"
        "a=sendrecv\r\n"
    )


def test_carrier_offer_picks_first_acceptable_line_and_mirrors_its_tag() -> None:
    offer = load("carrier_sbc_offer.sdp")
    answer, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert isinstance(config.crypto, SdesCrypto)
    # tag 1 has an MKI, tag 2 is a 32-bit tag suite, tag 4 wants unencrypted SRTCP.
    assert (config.crypto.tag, config.crypto.suite) == (3, "AEAD_AES_128_GCM")
    (line,) = answer.media[0].crypto
    assert (line.tag, line.suite, len(line.key_salt)) == (3, "AEAD_AES_128_GCM", 28)
    assert line.key_params[0].lifetime is None
    assert config.codec.name == "PCMA"  # the offerer's first choice
    assert (config.ptime, config.telephone_event) == (20, config.telephone_event)


def test_mki_can_be_allowed_and_local_suite_order_preferred() -> None:
    offer = load("carrier_sbc_offer.sdp")
    _, config = answer_offer(offer, replace(GATEWAY, allow_mki=True), LOCAL, key_source=Keys())
    assert isinstance(config.crypto, SdesCrypto) and config.crypto.tag == 1
    assert config.crypto.remote_attribute.key_params[0].mki == 1
    ours_first = replace(GATEWAY, allow_mki=True, prefer_local_suite_order=True)
    _, config = answer_offer(offer, ours_first, LOCAL, key_source=Keys())
    assert isinstance(config.crypto, SdesCrypto) and config.crypto.tag == 3


def test_maxptime_caps_the_remote_ptime() -> None:
    offer = sdes_offer(LINE_80)
    offer.media[0].add_attribute("ptime", "60")
    offer.media[0].add_attribute("maxptime", "40")
    _, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert config.ptime == 40
    offer.media[0].set_attribute("ptime", "bogus")
    _, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert config.ptime == 20
    offer.media[0].set_attribute("ptime", "30\x1c")  # found by the fuzzer: was a ValueError
    _, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert config.ptime == 20


def test_rtcp_attribute_gives_the_rtcp_address() -> None:
    offer = sdes_offer(LINE_80)
    offer.media[0].add_attribute("rtcp", "6001 IN IP4 198.51.100.2")
    _, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert config.remote_rtcp_address == ("198.51.100.2", 6001)


def test_rtcp_mux_is_accepted_when_offered() -> None:
    offer = sdes_offer(LINE_80)
    offer.media[0].add_attribute("rtcp-mux")
    answer, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert config.rtcp_mux and config.remote_rtcp_address == ("198.51.100.1", 5000)
    assert answer.media[0].rtcp_mux
    _, config = answer_offer(offer, replace(GATEWAY, rtcp_mux=False), LOCAL, key_source=Keys())
    assert not config.rtcp_mux


REFUSALS = {
    "mki": (
        [f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4"],
        "RTP/SAVP",
        "0",
        "tag 1: MKI not supported",
    ),
    "suite": (
        [f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}"],
        "RTP/SAVP",
        "0",
        "suite AES_CM_128_HMAC_SHA1_32 not accepted",
    ),
    "no crypto": ([], "RTP/SAVP", "0", "no acceptable a=crypto line (none present)"),
    "malformed crypto": (
        [f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30[:-4]}"],
        "RTP/SAVP",
        "0",
        "30-byte",
    ),
    "unencrypted": ([LINE_80 + " UNENCRYPTED_SRTP"], "RTP/SAVP", "0", "unencrypted SRTP"),
    "kdr": ([LINE_80 + " KDR=24"], "RTP/SAVP", "0", "key derivation rate"),
    "unknown param": ([LINE_80 + " FOO=1"], "RTP/SAVP", "0", "FOO not understood"),
    "misplaced key": (
        [f"{LINE_80} inline:{KEY30}"],
        "RTP/SAVP",
        "0",
        "session parameter (unnamed) not understood",
    ),
    "two keys": (
        [f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:1;inline:{KEY30}|2:1"],
        "RTP/SAVP",
        "0",
        "multiple master keys",
    ),
    "plain rtp": ([LINE_80], "RTP/AVP", "0", "plain RTP/AVP refused"),
    "dtls on sdes leg": ([], "UDP/TLS/RTP/SAVPF", "0", "requires RTP/SAVP"),
    "no codec": ([LINE_80], "RTP/SAVP", "18 101", "no common codec"),
}


@pytest.mark.parametrize(("crypto", "proto", "formats", "message"), REFUSALS.values(), ids=REFUSALS)
def test_sdes_policy_refusals_are_488_without_keys(
    crypto: list[str], proto: str, formats: str, message: str
) -> None:
    offer = sdes_offer(*crypto, proto=proto, formats=formats)
    with pytest.raises(SdpError) as info:
        answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.status_code == 488 and info.value.reason == "Not Acceptable Here"
    assert message in str(info.value)
    assert KEY30[:20] not in str(info.value)


def test_acceptable_line_after_refused_ones_is_taken() -> None:
    offer = sdes_offer(f"7 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4", LINE_80)
    _, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert isinstance(config.crypto, SdesCrypto) and config.crypto.tag == 1


def test_no_audio_and_declined_audio() -> None:
    video_only = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=video 5 RTP/SAVP 96\r\n"
    )
    with pytest.raises(SdpError, match="no audio stream"):
        answer_offer(video_only, GATEWAY, LOCAL, key_source=Keys())
    declined = sdes_offer(LINE_80)
    declined.media[0].port = 0
    with pytest.raises(SdpError, match="no audio stream"):
        answer_offer(declined, GATEWAY, LOCAL, key_source=Keys())


def test_missing_connection_is_a_parse_error() -> None:
    offer = sdes_offer(LINE_80)
    offer.connection = None
    with pytest.raises(SdpParseError, match="no c= line"):
        answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())


def test_unsupported_m_lines_are_declined_and_count_kept() -> None:
    offer = sdes_offer(LINE_80, proto="RTP/AVP")  # plain first: refused, kept as port 0
    second = sdes_offer(LINE_80).media[0]
    video = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=video 7 RTP/SAVP 96\r\na=mid:v\r\n"
    ).media[0]
    third = sdes_offer(LINE_80).media[0]
    offer.media += [second, video, third]
    answer, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert config.media_index == 1
    assert [m.port for m in answer.media] == [0, 30000, 0, 0]
    assert [m.proto for m in answer.media] == ["RTP/AVP", "RTP/SAVP", "RTP/SAVP", "RTP/SAVP"]
    assert answer.media[0].formats == ["0", "8", "101"] and answer.media[0].attributes == []
    assert answer.media[2].kind == "video" and answer.media[2].mid == "v"
    assert len(parse_sdp(answer.to_bytes()).media) == 4


# --- directions and hold -------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "wanted", "answered"),
    [
        (Direction.SENDRECV, Direction.SENDRECV, Direction.SENDRECV),
        (Direction.SENDONLY, Direction.SENDRECV, Direction.RECVONLY),
        (Direction.RECVONLY, Direction.SENDRECV, Direction.SENDONLY),
        (Direction.INACTIVE, Direction.SENDRECV, Direction.INACTIVE),
        (Direction.SENDRECV, Direction.SENDONLY, Direction.SENDONLY),
        (Direction.SENDONLY, Direction.SENDONLY, Direction.INACTIVE),
    ],
)
def test_answer_direction(offered: Direction, wanted: Direction, answered: Direction) -> None:
    offer = sdes_offer(LINE_80)
    offer.media[0].set_direction(offered)
    answer, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys(), direction=wanted)
    assert config.direction is answered
    assert answer.media[0].direction is answered


def test_session_level_direction_and_old_style_hold() -> None:
    offer = sdes_offer(LINE_80)
    offer.add_attribute("sendonly")
    _, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert config.direction is Direction.RECVONLY
    held = sdes_offer(LINE_80)
    held.connection = held.connection and replace(held.connection, address="0.0.0.0")
    _, config = answer_offer(held, GATEWAY, LOCAL, key_source=Keys())
    assert config.direction is Direction.RECVONLY


# --- re-offers (re-INVITE) -------------------------------------------------------------


def test_reoffer_with_unchanged_crypto_keeps_our_key() -> None:
    offer = load("baresip_sdes_offer.sdp")
    _, first = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    keys = Keys()
    keys.next = 200
    reoffer = load("baresip_sdes_offer.sdp")
    reoffer.media[0].set_direction(Direction.SENDONLY)
    answer, second = answer_offer(
        reoffer, GATEWAY, replace(LOCAL, session_version=1), key_source=keys, previous=first
    )
    assert keys.requests == []
    assert isinstance(second.crypto, SdesCrypto) and isinstance(first.crypto, SdesCrypto)
    assert second.crypto.local_key == first.crypto.local_key
    assert answer.media[0].crypto == [first.crypto.local_attribute]
    assert answer.origin.session_version == 1
    assert second.direction is Direction.RECVONLY


def test_reoffer_with_new_remote_key_gets_a_new_local_key() -> None:
    _, first = answer_offer(sdes_offer(LINE_80), GATEWAY, LOCAL, key_source=Keys())
    rekeyed = f"1 AES_CM_128_HMAC_SHA1_80 inline:{b64(bytes(range(30, 60)))}"
    keys = Keys()
    keys.next = 200
    _, second = answer_offer(sdes_offer(rekeyed), GATEWAY, LOCAL, key_source=keys, previous=first)
    assert keys.requests == [30]
    assert isinstance(second.crypto, SdesCrypto) and isinstance(first.crypto, SdesCrypto)
    assert second.crypto.local_key != first.crypto.local_key


def test_reoffer_prefers_the_unchanged_line_over_a_new_first_line() -> None:
    _, first = answer_offer(sdes_offer(LINE_80), GATEWAY, LOCAL, key_source=Keys())
    new_first = f"2 AEAD_AES_128_GCM inline:{b64(bytes(28))}"
    _, second = answer_offer(
        sdes_offer(new_first, LINE_80), GATEWAY, LOCAL, key_source=Keys(), previous=first
    )
    assert isinstance(second.crypto, SdesCrypto) and second.crypto.tag == 1


def test_our_reoffer_repeats_the_negotiated_line_first() -> None:
    offer = build_offer(GATEWAY, LOCAL, key_source=Keys())
    config = process_answer(offer, load("freeswitch_answer.sdp"), GATEWAY)
    assert isinstance(config.crypto, SdesCrypto)
    keys = Keys()
    reoffer = build_offer(
        GATEWAY, replace(LOCAL, session_version=1), key_source=keys, previous=config
    )
    lines = reoffer.media[0].crypto
    assert lines[0] == config.crypto.local_attribute
    assert [(c.tag, c.suite) for c in lines] == [
        (3, "AES_CM_128_HMAC_SHA1_80"),
        (1, "AEAD_AES_256_GCM"),
        (2, "AEAD_AES_128_GCM"),
    ]
    assert keys.requests == [44, 28]


# --- processing answers to our offer -----------------------------------------------------


def test_process_freeswitch_answer() -> None:
    offer = build_offer(GATEWAY, LOCAL, key_source=Keys())
    answer = load("freeswitch_answer.sdp")
    config = process_answer(offer, answer, GATEWAY)
    assert isinstance(config.crypto, SdesCrypto)
    assert (config.crypto.tag, config.crypto.suite) == (3, "AES_CM_128_HMAC_SHA1_80")
    assert config.crypto.local_key == bytes(range(72, 102))
    assert config.crypto.remote_key == answer.media[0].crypto[0].key_salt
    assert config.remote_address == ("203.0.113.5", 24580)
    assert config.remote_rtcp_address == ("203.0.113.5", 24581)
    assert not config.rtcp_mux
    assert [str(c) for c in config.codecs] == ["PCMU/8000"]
    assert config.telephone_event is not None and config.telephone_event.clock_rate == 8000
    assert config.direction is Direction.SENDRECV


def test_offer_and_answer_between_two_gateways_agree() -> None:
    offer = build_offer(GATEWAY, LOCAL, key_source=Keys())
    far = LocalMedia(address="198.51.100.9", port=40000, session_id=9)
    far_keys = Keys()
    far_keys.next = 128
    answer, far_config = answer_offer(
        parse_sdp(offer.to_bytes()), GATEWAY, far, key_source=far_keys
    )
    config = process_answer(offer, parse_sdp(answer.to_bytes()), GATEWAY)
    assert isinstance(config.crypto, SdesCrypto) and isinstance(far_config.crypto, SdesCrypto)
    assert config.crypto.suite == "AEAD_AES_256_GCM"
    assert config.crypto.local_key == far_config.crypto.remote_key
    assert config.crypto.remote_key == far_config.crypto.local_key
    assert config.rtcp_mux and far_config.rtcp_mux
    assert config.remote_address == ("198.51.100.9", 40000)
    assert far_config.remote_address == ("192.0.2.10", 30000)


def answer_text(
    *, crypto: str, proto: str = "RTP/SAVP", port: int = 7000, formats: str = "0"
) -> str:
    return (
        "v=0\r\no=- 5 5 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\n"
        f"m=audio {port} {proto} {formats}\r\na=crypto:{crypto}\r\na=recvonly\r\n"
    )


ANSWER_REFUSALS = {
    "unknown tag": (answer_text(crypto=f"9 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"), "tag 9"),
    "suite changed": (
        answer_text(crypto=f"3 AEAD_AES_128_GCM inline:{b64(bytes(28))}"),
        "does not match",
    ),
    "declined": (answer_text(crypto=LINE_80, port=0), "declined"),
    "transport": (answer_text(crypto=LINE_80, proto="RTP/AVP"), "changed the transport"),
    "codec": (answer_text(crypto=LINE_80, formats="18"), "no codec"),
    "codec not offered": (answer_text(crypto=LINE_80, formats="9"), "no codec"),
    "mki": (answer_text(crypto=f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:4"), "MKI"),
}


@pytest.mark.parametrize(("text", "message"), ANSWER_REFUSALS.values(), ids=ANSWER_REFUSALS)
def test_answer_refusals(text: str, message: str) -> None:
    offer = build_offer(GATEWAY, LOCAL, key_source=Keys())
    with pytest.raises(SdpError, match=message) as info:
        process_answer(offer, parse_sdp(text), GATEWAY)
    assert info.value.status_code == 488
    assert KEY30[:20] not in str(info.value)


def test_answer_direction_and_mline_count() -> None:
    offer = build_offer(GATEWAY, LOCAL, key_source=Keys())
    answer = parse_sdp(answer_text(crypto=f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"))
    assert process_answer(offer, answer, GATEWAY).direction is Direction.SENDONLY
    answer.media.append(answer.media[0])
    with pytest.raises(SdpError, match="2 m-lines"):
        process_answer(offer, answer, GATEWAY)
    with pytest.raises(ValueError, match="no active audio"):
        process_answer(parse_sdp(answer_text(crypto=LINE_80, port=0)), answer, GATEWAY)


# --- DTLS (WebRTC leg) -----------------------------------------------------------------


def test_answer_chrome_offer() -> None:
    offer = load("chrome_offer.sdp")
    keys = Keys()
    answer, config = answer_offer(offer, WEBRTC, WEBRTC_LOCAL, key_source=keys)
    assert keys.requests == []
    assert isinstance(config.crypto, DtlsCrypto)
    assert config.crypto.remote_fingerprint == offer.media[0].fingerprints[0]
    assert config.crypto.remote_setup is SetupRole.ACTPASS
    assert config.crypto.local_setup is SetupRole.ACTIVE
    assert str(config.codec) == "opus/48000/2" and config.codec.payload_type == 111
    assert config.codec.fmtp == "minptime=10;useinbandfec=1"  # the offer's
    assert config.telephone_event is not None
    assert (config.telephone_event.payload_type, config.telephone_event.clock_rate) == (110, 48000)
    assert config.remote_address == config.remote_rtcp_address == ("203.0.113.45", 54312)
    assert config.rtcp_mux and config.mid == "0"
    assert config.remote_ice is not None and config.remote_ice.ufrag == "Fz7k"
    assert len(config.remote_ice.candidates) == 3 and not config.remote_ice.lite
    audio, video = answer.media
    assert answer.bundle_mids == ("0",)
    assert (video.port, video.mid, video.formats) == (0, "1", ["96", "97", "102", "103"])
    assert audio.formats == ["111", "110"] and audio.proto == "UDP/TLS/RTP/SAVPF"
    assert audio.fmtp("111") == OPUS_FMTP
    assert audio.setup is SetupRole.ACTIVE and audio.fingerprints == [OUR_FINGERPRINT]
    assert (audio.ice_ufrag, audio.ice_pwd) == ("brdg", "bridge-ice-password-123")
    assert audio.candidates == [HOST] and audio.has_attribute("end-of-candidates")
    assert audio.rtcp_mux and audio.mid == "0"
    assert "bridge-ice-password" not in repr(answer) + repr(config)
    assert "0Ks9vQ6pX3mA7cLr2uYb1tEw" not in repr(config)
    assert parse_sdp(answer.to_bytes()) == answer


def test_answer_firefox_offer_uses_session_fingerprint_and_is_not_hold() -> None:
    offer = load("firefox_offer.sdp")
    profile = replace(WEBRTC, codecs=(PCMA, PCMU))
    answer, config = answer_offer(offer, profile, WEBRTC_LOCAL, key_source=Keys())
    assert isinstance(config.crypto, DtlsCrypto)
    assert config.crypto.remote_fingerprints == tuple(offer.fingerprints)
    assert str(config.codec) == "PCMU/8000"  # first offered codec we support
    assert config.telephone_event is not None and config.telephone_event.payload_type == 101
    assert config.direction is Direction.SENDRECV  # c=0.0.0.0 with ICE is not hold
    assert config.remote_address == ("0.0.0.0", 9)
    assert answer.media[1].formats == ["webrtc-datachannel"] and answer.media[1].port == 0


DTLS_REFUSALS = {
    "sdes on dtls leg": ("baresip_sdes_offer.sdp", None, "requires DTLS-SRTP"),
    "no fingerprint": (
        "chrome_offer.sdp",
        lambda s: s.media[0].remove_attribute("fingerprint"),
        "without a=fingerprint",
    ),
    "weak fingerprint": (
        "chrome_offer.sdp",
        lambda s: s.media[0].set_attribute("fingerprint", "sha-1 " + ":".join(["AB"] * 20)),
        "accepted hash",
    ),
    "no common codec": (
        "firefox_offer.sdp",
        lambda s: s.media[0].formats.__setitem__(slice(None), ["101"]),
        "no common codec",
    ),
}


@pytest.mark.parametrize(("name", "edit", "message"), DTLS_REFUSALS.values(), ids=DTLS_REFUSALS)
def test_dtls_refusals(name: str, edit, message: str) -> None:
    offer = load(name)
    if edit is not None:
        edit(offer)
    with pytest.raises(SdpError, match=message) as info:
        answer_offer(offer, WEBRTC, WEBRTC_LOCAL, key_source=Keys())
    assert info.value.status_code == 488


def test_dtls_profile_needs_local_parameters() -> None:
    with pytest.raises(ValueError, match=r"fingerprints and LocalMedia\.ice"):
        answer_offer(load("chrome_offer.sdp"), WEBRTC, LOCAL, key_source=Keys())


def test_dtls_reoffer_keeps_our_role() -> None:
    offer = load("chrome_offer.sdp")
    _, first = answer_offer(offer, WEBRTC, WEBRTC_LOCAL, key_source=Keys())
    assert isinstance(first.crypto, DtlsCrypto)
    previous = replace(first, crypto=replace(first.crypto, local_setup=SetupRole.PASSIVE))
    _, second = answer_offer(offer, WEBRTC, WEBRTC_LOCAL, key_source=Keys(), previous=previous)
    assert isinstance(second.crypto, DtlsCrypto) and second.crypto.local_setup is SetupRole.PASSIVE


def test_dtls_offer_and_browser_answer() -> None:
    offer = build_offer(WEBRTC, WEBRTC_LOCAL, key_source=Keys())
    media = offer.media[0]
    assert media.proto == "UDP/TLS/RTP/SAVPF" and media.formats == ["111", "0", "8", "101"]
    assert media.setup is SetupRole.ACTPASS and offer.bundle_mids == ("0",)
    assert media.crypto == []
    chrome = load("chrome_offer.sdp")
    browser = LocalMedia(address="203.0.113.45", port=54312, session_id=77, ice=WEBRTC_LOCAL.ice)
    browser_profile = replace(WEBRTC, fingerprints=tuple(chrome.media[0].fingerprints))
    answer, _ = answer_offer(parse_sdp(str(offer)), browser_profile, browser, key_source=Keys())
    config = process_answer(offer, answer, WEBRTC)
    assert isinstance(config.crypto, DtlsCrypto)
    assert config.crypto.remote_setup is SetupRole.ACTIVE
    assert config.crypto.local_setup is SetupRole.PASSIVE
    assert str(config.codec) == "opus/48000/2"
    answer.media[0].set_attribute("setup", "actpass")
    with pytest.raises(SdpError, match="setup:actpass"):
        process_answer(offer, answer, WEBRTC)


def test_dtls_reoffer_uses_our_negotiated_role() -> None:
    offer = build_offer(WEBRTC, WEBRTC_LOCAL, key_source=Keys())
    config = MediaConfig(
        codecs=(),
        telephone_event=None,
        ptime=20,
        remote_address=("h", 1),
        remote_rtcp_address=("h", 1),
        rtcp_mux=True,
        direction=Direction.SENDRECV,
        crypto=DtlsCrypto(
            remote_fingerprints=(OUR_FINGERPRINT,),
            remote_setup=SetupRole.ACTIVE,
            local_setup=SetupRole.PASSIVE,
        ),
    )
    reoffer = build_offer(WEBRTC, WEBRTC_LOCAL, key_source=Keys(), previous=config)
    assert offer.media[0].setup is SetupRole.ACTPASS
    assert reoffer.media[0].setup is SetupRole.PASSIVE


# --- secrets ---------------------------------------------------------------------------


def test_keys_never_appear_in_repr_of_configs_or_errors() -> None:
    offer = load("baresip_sdes_offer.sdp")
    answer, config = answer_offer(offer, GATEWAY, LOCAL, key_source=Keys())
    assert isinstance(config.crypto, SdesCrypto)
    text = repr(config) + repr(config.crypto) + repr(answer) + repr(offer)
    for key in (config.crypto.local_key, config.crypto.remote_key):
        assert b64(key) not in text and key.hex() not in text and repr(key) not in text
    assert b64(config.crypto.local_key) in str(answer)  # the SDP is where keys go


def test_profile_validation() -> None:
    with pytest.raises(ValueError, match="unknown crypto suites"):
        MediaProfile(crypto_suites=("NULL",))
    with pytest.raises(ValueError, match="collides"):
        MediaProfile(codecs=(CodecSpec(name="x", clock_rate=8000, payload_type=101),))
    with pytest.raises(ValueError, match="at least one codec"):
        MediaProfile(codecs=())
    with pytest.raises(ValueError, match="port"):
        LocalMedia(address="h", port=0, session_id=1)


def test_malformed_optional_lines_are_tolerated_in_negotiation() -> None:
    offer = load("chrome_offer.sdp")
    offer.add_attribute("ice-lite")
    audio = offer.media[0]
    audio.add_attribute("candidate", "broken")
    audio.add_attribute("rtpmap", "111 broken")
    audio.remove_attribute("rtcp-mux")
    audio.set_attribute("rtcp", "not-a-port")
    _, config = answer_offer(offer, WEBRTC, WEBRTC_LOCAL, key_source=Keys())
    assert config.remote_ice is not None and config.remote_ice.lite
    assert len(config.remote_ice.candidates) == 3
    assert config.remote_rtcp_address == ("203.0.113.45", 54313)
    assert str(config.codec) == "opus/48000/2"
