"""Fuzz target: the SDES ``a=crypto`` value (RFC 4568) and the gateway leg's choice of one.

The input is the text after ``a=crypto:`` (bytes decoded as UTF-8, undecodable bytes
replaced). Property: :meth:`CryptoAttribute.parse` either raises :class:`SdpParseError`
or gives an attribute that re-parses from its own ``str()`` to an equal attribute (and
``str()`` is a fixed point), whose ``repr()`` never shows a key; placed in an SDES offer
(``m=audio ... RTP/SAVP``), the gateway leg's answer is a config or :class:`SdpError`,
and with an accepted line the answer carries our own key.

Seeds: the ``a=crypto`` lines of the real SDPs and the RFC 4568 example forms (lifetime,
``2^n``, MKI, several keys, session parameters).

Run: ``python -m tests.fuzz.sdp_crypto -max_total_time=60 [corpus_dir]``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

from tests.fuzz.harness import instrumented, main, sdp_captures

with instrumented(__name__, "sip_gateway.sdp"):
    from sip_gateway.sdp import (
        CryptoAttribute,
        LocalMedia,
        MediaProfile,
        SdesCrypto,
        SdpError,
        SdpParseError,
        answer_offer,
        parse_sdp,
    )

TARGET = "sdp_crypto"
PROFILES = (MediaProfile(), MediaProfile(allow_mki=True, prefer_local_suite_order=True))
LOCAL = LocalMedia(address="192.0.2.1", port=4000, session_id=1)
OUR_KEY = bytes(range(46))
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
    "m=audio 5000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=crypto:{}\r\n"
)


def our_key(size: int) -> bytes:
    """A recognizable key source."""
    return OUR_KEY[:size]


def one_input(data: bytes) -> None:
    """The property for one input (raises AssertionError or the crash itself)."""
    value = data.decode("utf-8", "replace")
    try:
        crypto = CryptoAttribute.parse(value)
    except SdpParseError as exc:
        assert exc.status_code == 400
    else:
        text = str(crypto)
        assert CryptoAttribute.parse(text) == crypto, "parse(str(c)) != c"
        assert str(CryptoAttribute.parse(text)) == text, "str() is not a fixed point"
        shown = repr(crypto)
        for params in crypto.key_params:
            encoded = base64.b64encode(params.key_salt).decode().rstrip("=")
            if len(params.key_salt) >= 4 and not any(encoded in p for p in crypto.session_params):
                assert encoded not in shown, "key in repr"
    if "\n" in value or "\r" in value or "\x00" in value:
        return
    try:
        offer = parse_sdp(OFFER.format(value))
    except SdpParseError:
        return
    for profile in PROFILES:
        try:
            answer, config = answer_offer(offer, profile, LOCAL, key_source=our_key)
        except SdpError:
            continue
        assert isinstance(config.crypto, SdesCrypto), "SDES offer answered without SDES"
        (chosen,) = answer.media[0].crypto
        assert chosen.key_salt == config.crypto.local_key, "answer and config disagree"
        assert config.crypto.local_key == our_key(len(config.crypto.local_key))


def seeds() -> Iterator[bytes]:
    """``a=crypto`` values from the captures and the RFC 4568 forms."""
    key = base64.b64encode(bytes(range(1, 31))).decode()
    big = base64.b64encode(bytes(range(1, 47))).decode()
    yield f"1 AES_CM_128_HMAC_SHA1_80 inline:{key}".encode()
    yield f"1 AES_CM_128_HMAC_SHA1_32 inline:{key}|2^20|1:4".encode()
    two = f"inline:{key}|2^20|1:4;inline:{key}|2^20|2:4"
    yield f"2 F8_128_HMAC_SHA1_80 {two} FEC_ORDER=FEC_SRTP".encode()
    yield f"3 AES_256_CM_HMAC_SHA1_80 inline:{big}|1048576 KDR=1 UNENCRYPTED_SRTCP".encode()
    yield f"4 AEAD_AES_128_GCM inline:{base64.b64encode(bytes(28)).decode()} WSH=64".encode()
    for capture in sdp_captures():
        for line in capture.decode("utf-8", "replace").splitlines():
            if line.startswith("a=crypto:"):
                yield line.removeprefix("a=crypto:").encode()


if __name__ == "__main__":
    main(TARGET, one_input, seeds)
