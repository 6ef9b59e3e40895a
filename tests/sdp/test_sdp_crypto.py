"""a=crypto (RFC 4568) and a=fingerprint / a=setup attributes."""

from __future__ import annotations

import base64
import hashlib

import pytest

from sip_gateway.sdp import (
    SUITES,
    CryptoAttribute,
    Fingerprint,
    KeyParams,
    SdpParseError,
    SetupRole,
)

# RFC 4568 sections 4, 6.1 and 8 example lines (their keys are public example values).
RFC4568_VECTORS = [
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32",
    "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32",
    "2 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20|1:4;"
    "inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP",
    "1 AES_CM_128_HMAC_SHA1_80 inline:YUJDZGVmZ2hpSktMbW9QUXJzVHVWd3l6MTIzNDU2|1066:4",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
]


@pytest.mark.parametrize("value", RFC4568_VECTORS)
def test_rfc4568_vectors_round_trip(value: str) -> None:
    crypto = CryptoAttribute.parse(value)
    assert str(crypto) == value
    assert all(len(p.key_salt) == 30 for p in crypto.key_params)


def test_rfc4568_first_vector_fields() -> None:
    crypto = CryptoAttribute.parse(RFC4568_VECTORS[0])
    assert crypto.tag == 1 and crypto.suite == "AES_CM_128_HMAC_SHA1_80"
    (params,) = crypto.key_params
    assert params.lifetime == 2**20 and params.lifetime_power
    assert (params.mki, params.mki_length) == (1, 4)
    assert params.key_salt == base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert crypto.key_salt == params.key_salt and crypto.has_mki


def test_multiple_key_params_and_session_params() -> None:
    crypto = CryptoAttribute.parse(RFC4568_VECTORS[3])
    assert len(crypto.key_params) == 2
    assert [p.mki for p in crypto.key_params] == [1, 2]
    assert crypto.session_params == ("FEC_ORDER=FEC_SRTP",)


def test_mki_only_and_decimal_lifetime() -> None:
    mki_only = CryptoAttribute.parse(RFC4568_VECTORS[4]).key_params[0]
    assert mki_only.lifetime is None and (mki_only.mki, mki_only.mki_length) == (1066, 4)
    decimal = CryptoAttribute.parse(
        "7 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1048576"
    )
    assert decimal.key_params[0].lifetime == 2**20 and not decimal.key_params[0].lifetime_power
    assert str(decimal).endswith("|1048576")


@pytest.mark.parametrize(
    ("suite", "length"),
    [
        ("AES_CM_128_HMAC_SHA1_80", 30),
        ("AES_CM_128_HMAC_SHA1_32", 30),
        ("AEAD_AES_128_GCM", 28),
        ("AEAD_AES_256_GCM", 44),
        ("AES_256_CM_HMAC_SHA1_80", 46),
        ("AES_256_CM_HMAC_SHA1_32", 46),
        ("AES_192_CM_HMAC_SHA1_80", 38),
    ],
)
def test_key_length_is_validated_per_suite(suite: str, length: int) -> None:
    assert SUITES[suite].key_salt_length == length
    good = base64.b64encode(bytes(range(length))).decode()
    crypto = CryptoAttribute.parse(f"1 {suite} inline:{good}")
    assert len(crypto.key_salt) == length
    assert str(crypto) == f"1 {suite} inline:{good}"
    for wrong in (length - 1, length + 1):
        bad = base64.b64encode(bytes(range(wrong))).decode()
        with pytest.raises(SdpParseError) as info:
            CryptoAttribute.parse(f"1 {suite} inline:{bad}")
        assert bad not in str(info.value)
        assert f"{length}-byte" in str(info.value)


def test_unpadded_base64_is_accepted() -> None:
    key = bytes(range(28))
    unpadded = base64.b64encode(key).decode().rstrip("=")
    crypto = CryptoAttribute.parse(f"1 AEAD_AES_128_GCM inline:{unpadded}")
    assert crypto.key_salt == key


def test_unknown_suite_is_parsed_without_length_check() -> None:
    crypto = CryptoAttribute.parse("3 SEED_CTR_128_HMAC_SHA1_80 inline:QUJD")
    assert crypto.suite == "SEED_CTR_128_HMAC_SHA1_80" and crypto.key_salt == b"ABC"


MALFORMED = [
    "",
    "1",
    "1 AES_CM_128_HMAC_SHA1_80",
    "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    "1234567890 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    "1 AES-CM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    "1 AES_CM_128_HMAC_SHA1_80 uri:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVB!",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^65",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^9999999999",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|0",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:0",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:129",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|256:1",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:4|2^20",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|2^20",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1|2|3",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR;",
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_crypto_raises_parse_error_without_key(value: str) -> None:
    with pytest.raises(SdpParseError) as info:
        CryptoAttribute.parse(value)
    assert info.value.status_code == 400
    assert "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVB" not in str(info.value)


def test_repr_never_contains_key_material() -> None:
    crypto = CryptoAttribute.parse(
        RFC4568_VECTORS[3] + " FEC_KEY=inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4"
    )
    text = repr(crypto) + repr(crypto.key_params) + repr([crypto])
    for params in crypto.key_params:
        assert base64.b64encode(params.key_salt).decode() not in text
        assert params.key_salt.hex() not in text
        assert repr(params.key_salt) not in text
    assert "QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5" not in text
    assert "FEC_KEY=inline:<redacted>" in text
    assert "F8_128_HMAC_SHA1_80" in text and "mki=2" in text


def test_create_and_to_attribute() -> None:
    key = bytes(range(44))
    crypto = CryptoAttribute.create(tag=5, suite="AEAD_AES_256_GCM", key_salt=key)
    attribute = crypto.to_attribute()
    assert attribute.name == "crypto"
    assert attribute.value == f"5 AEAD_AES_256_GCM inline:{base64.b64encode(key).decode()}"
    assert CryptoAttribute.parse(attribute.value) == crypto
    assert base64.b64encode(key).decode() not in repr(attribute)
    with pytest.raises(ValueError, match="44-byte") as info:
        CryptoAttribute.create(tag=5, suite="AEAD_AES_256_GCM", key_salt=key[:-1])
    assert base64.b64encode(key[:-1]).decode() not in str(info.value)
    with pytest.raises(ValueError, match="unknown crypto suite"):
        CryptoAttribute.create(tag=5, suite="NULL_HMAC_SHA1_80", key_salt=key)


def test_key_params_invariants() -> None:
    with pytest.raises(ValueError, match="go together"):
        KeyParams(key_salt=b"x", mki=1)
    with pytest.raises(ValueError, match="fit"):
        KeyParams(key_salt=b"x", mki=256, mki_length=1)
    assert (
        str(KeyParams(key_salt=b"abc", lifetime=2**31, lifetime_power=True)) == "inline:YWJj|2^31"
    )
    assert str(KeyParams(key_salt=b"abc", lifetime=2**31)) == "inline:YWJj|2147483648"
    with pytest.raises(ValueError, match="power of two"):
        KeyParams(key_salt=b"abc", lifetime=3, lifetime_power=True)


# --- a=fingerprint and a=setup -------------------------------------------------------


def test_fingerprint_parse_compare_and_digest() -> None:
    value = ":".join(f"{b:02X}" for b in range(32))
    fingerprint = Fingerprint.parse(f"sha-256 {value}")
    assert fingerprint.digest == bytes(range(32))
    assert fingerprint.matches(Fingerprint.parse(f"SHA-256 {value.lower()}"))
    assert not fingerprint.matches(Fingerprint.from_digest("sha-256", bytes(32)))
    assert Fingerprint.from_digest("SHA-256", bytes(range(32))) == fingerprint
    assert fingerprint.to_attribute().value == f"sha-256 {value}"


def test_fingerprint_of_certificate() -> None:
    der = b"0\x82\x01\x00not-really-a-certificate"
    fingerprint = Fingerprint.of_certificate(der, "sha-384")
    assert fingerprint.digest == hashlib.sha384(der).digest()
    assert fingerprint.algorithm == "sha-384"
    with pytest.raises(ValueError, match="unsupported"):
        Fingerprint.of_certificate(der, "md2")


@pytest.mark.parametrize(
    "value",
    ["", "sha-256", "sha-256 ", "sha-256 AB:CD", "sha-256 ABCD", "sha_256 AB", "sha-1 A:BC", "x y"],
)
def test_malformed_fingerprint(value: str) -> None:
    with pytest.raises(SdpParseError):
        Fingerprint.parse(value)


def test_unknown_hash_is_kept() -> None:
    assert Fingerprint.parse("sha3-256 AB:CD").digest == b"\xab\xcd"


def test_setup_roles() -> None:
    assert SetupRole.parse(" ActPass ") is SetupRole.ACTPASS
    assert SetupRole.ACTPASS.answer() is SetupRole.ACTIVE
    assert SetupRole.ACTIVE.answer() is SetupRole.PASSIVE
    assert SetupRole.PASSIVE.answer() is SetupRole.ACTIVE
    assert SetupRole.HOLDCONN.answer() is SetupRole.HOLDCONN
    assert str(SetupRole.PASSIVE.to_attribute()) == "setup:passive"
    with pytest.raises(SdpParseError):
        SetupRole.parse("server")
