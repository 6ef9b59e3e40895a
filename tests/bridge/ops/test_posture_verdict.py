"""bridge.ops.posture: the sans-IO verdict and the s_client transcript parser.

Each policy rule is shown failing on an observation that differs from a passing one in that
one respect (the passing baseline is asserted first), so a rule that stopped firing fails.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from bridge.ops.posture import (
    GROUPS,
    POLICY_GROUPS,
    SUITE_FAMILIES,
    Observation,
    assess,
    hostname_matches,
    parse_s_client,
)
from tests.weakcerts import Issued, make_cert, new_key

NOW = datetime.now(UTC)
CA = make_cert(key=new_key("ec384"), name="posture CA", sans=())


def der(issued: Issued) -> bytes:
    return issued.cert.public_bytes(Encoding.DER)


def good(**changes: object) -> Observation:
    base = Observation(
        target="127.0.0.1:5061",
        server_name=None,
        host="127.0.0.1",
        protocols={"SSLv3": None, "TLSv1": False, "TLSv1.1": False, "TLSv1.2": True,
                   "TLSv1.3": True},
        suites={f: (("ECDHE-ECDSA-AES128-GCM-SHA256",) if f == "ecdhe-aead" else ())
                for f in SUITE_FAMILIES},
        groups={g: g in POLICY_GROUPS for g in GROUPS},
        chain=(der(make_cert(issuer=CA)), der(CA)),
        chain_verified=True,
        compression="NONE",
        secure_renegotiation=True,
        ocsp_stapled=False,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def fails(obs: Observation) -> set[str]:
    return {f.code for f in assess(obs, NOW).findings if f.severity == "fail"}


def test_baseline_meets_policy_with_one_note() -> None:
    report = assess(good(), NOW)
    assert not report.below_policy
    assert [(f.severity, f.code, f.text) for f in report.findings] == [
        ("note", "ocsp-not-stapled", "OCSP stapling: not offered")
    ]
    assert report.facts["ocsp_stapling"] == "not offered"
    assert report.facts["forward_secrecy"] is True
    cert = report.facts["certificate"]
    assert isinstance(cert, dict)
    assert cert["key"] == "ECDSA 256" and cert["signature"] == "sha256"
    assert 88 <= int(cert["days_left"]) <= 90


@pytest.mark.parametrize("old", ["SSLv3", "TLSv1", "TLSv1.1"])
def test_old_protocol_fails(old: str) -> None:
    obs = good(protocols={**good().protocols, old: True})
    assert fails(obs) == {"protocol-below-tls12"}
    assert assess(obs, NOW).facts["forward_secrecy"] is False


def test_untestable_protocol_is_not_a_failure_and_tls13_only_passes() -> None:
    protocols = {"SSLv3": None, "TLSv1": None, "TLSv1.1": False, "TLSv1.2": False, "TLSv1.3": True}
    assert fails(good(protocols=protocols)) == set()
    nothing = dict.fromkeys(protocols, False)
    assert fails(good(protocols=nothing)) == {"no-tls12-or-tls13"}


@pytest.mark.parametrize("family", [f for f in SUITE_FAMILIES if f != "ecdhe-aead"])
def test_each_non_policy_suite_family_fails(family: str) -> None:
    suites = {**good().suites, family: ("SOME-SUITE",)}
    assert fails(good(suites=suites)) == {f"suite-{family}"}


def test_tls12_without_ecdhe_aead_fails() -> None:
    assert fails(good(suites={**good().suites, "ecdhe-aead": ()})) == {"suite-no-ecdhe-aead"}


def test_rsa_kex_means_no_forward_secrecy() -> None:
    report = assess(good(suites={**good().suites, "rsa-kex": ("AES256-GCM-SHA384",)}), NOW)
    assert report.facts["forward_secrecy"] is False and report.below_policy


@pytest.mark.parametrize(("group", "strength"), [("X448", "strong, but"), ("ffdhe2048", "below")])
def test_group_outside_the_list_fails(group: str, strength: str) -> None:
    report = assess(good(groups={**good().groups, group: True}), NOW)
    (failure,) = [f for f in report.findings if f.severity == "fail"]
    assert failure.code == "group-outside-list" and strength in failure.text


def test_no_policy_group_fails() -> None:
    assert fails(good(groups=dict.fromkeys(GROUPS, False))) == {"group-none"}


def test_compression_and_missing_secure_renegotiation_fail() -> None:
    assert fails(good(compression="zlib compression")) == {"compression"}
    assert fails(good(secure_renegotiation=False)) == {"no-secure-renegotiation"}
    tls13_only = {**good().protocols, "TLSv1.2": False}
    assert fails(good(protocols=tls13_only, secure_renegotiation=None)) == set()


@pytest.mark.parametrize(
    ("header", "codes"),
    [
        ("max-age=31536000; includeSubDomains", set()),
        ('max-age="63072000"; includeSubDomains; preload', set()),
        ("max-age=31535999; includeSubDomains", {"hsts-short"}),
        ("max-age=31536000", {"hsts-no-subdomains"}),
        ("includeSubDomains", {"hsts-short"}),
        (None, {"hsts-missing"}),
    ],
)
def test_hsts_rules_apply_to_https_only(header: str | None, codes: set[str]) -> None:
    assert fails(good(https=True, hsts=header, http_status=200)) == codes
    assert fails(good(https=False, hsts=header)) == set()


def test_ocsp_staple_removes_the_note() -> None:
    report = assess(good(ocsp_stapled=True), NOW)
    assert report.findings == () and report.facts["ocsp_stapling"] == "offered"


@pytest.mark.parametrize(
    ("leaf", "code"),
    [
        (lambda: make_cert(issuer=CA, key=new_key("rsa1024")), "certificate-weak-key"),
        (lambda: make_cert(issuer=CA, key=new_key("ec224")), "certificate-weak-key"),
        (lambda: make_cert(issuer=CA, digest=hashes.SHA224()), "certificate-weak-signature"),
        (lambda: make_cert(issuer=CA, not_before=NOW - timedelta(days=9),
                           not_after=NOW - timedelta(days=1)), "certificate-expired"),
        (lambda: make_cert(issuer=CA, not_before=NOW + timedelta(days=1)),
         "certificate-not-yet-valid"),
        (lambda: make_cert(issuer=CA, sans=("otherhost.example",)), "hostname-mismatch"),
    ],
    ids=["rsa-1024", "ec-p224", "sha224", "expired", "not-yet-valid", "wrong-name"],
)  # fmt: skip
def test_certificate_rules(leaf: object, code: str) -> None:
    assert fails(good(chain=(der(leaf()), der(CA)))) == {code}  # type: ignore[operator]


def test_rsa_2048_leaf_passes_and_unverified_chain_fails() -> None:
    rsa = make_cert(issuer=CA, key=new_key("rsa2048"))
    report = assess(good(chain=(der(rsa),)), NOW)
    assert not report.below_policy and report.facts["certificate"]["key"] == "RSA 2048"  # type: ignore[index]
    unverified = good(chain_verified=False, verify_error="self-signed certificate in chain")
    (failure,) = [f for f in assess(unverified, NOW).findings if f.severity == "fail"]
    assert failure.code == "chain-unverified" and "self-signed certificate" in failure.text
    assert fails(good(chain=())) == {"certificate-none"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("gw.example.net", True), ("GW.example.net.", True), ("a.gw.example.net", False),
     ("x.wild.example.net", True), ("wild.example.net", False), ("a.b.wild.example.net", False),
     ("192.0.2.7", True), ("2001:db8::7", True), ("[2001:db8::7]", True), ("192.0.2.8", False)],
)  # fmt: skip
def test_hostname_matching(name: str, expected: bool) -> None:
    cert = make_cert(sans=("gw.example.net", "*.wild.example.net", "192.0.2.7", "2001:db8::7"))
    assert hostname_matches(cert.cert, name) is expected


def test_no_san_matches_nothing() -> None:
    assert not hostname_matches(make_cert(sans=()).cert, "localhost")


TLS12_ACCEPTED = """CONNECTED(00000003)
Server Temp Key: ECDH, prime256v1, 256 bits
---
New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256
Secure Renegotiation IS supported
Compression: NONE
ALPN protocol: http/1.1
OCSP response: no response sent
SSL-Session:
    Protocol  : TLSv1.2
    Cipher    : ECDHE-ECDSA-AES128-GCM-SHA256
    Verify return code: 0 (ok)
"""
TLS11_NEW_LINE_SAYS_TLS10 = """New, TLSv1.0, Cipher is ECDHE-RSA-AES256-SHA
Secure Renegotiation IS supported
SSL-Session:
    Protocol  : TLSv1.1
    Cipher    : ECDHE-RSA-AES256-SHA
    Verify return code: 21 (unable to verify the first certificate)
"""
TLS13_WITHOUT_SESSION = """Server Temp Key: X25519, 253 bits
New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384
Secure Renegotiation IS NOT supported
Compression: NONE
"""
REFUSED = """error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure
New, (NONE), Cipher is (NONE)
SSL-Session:
    Protocol  : TLSv1.2
    Cipher    : 0000
"""
CANNOT_OFFER = 'Error with command: "-cipher RC4"\nerror:0A0000B9:SSL routines::no cipher match\n'


def test_parse_accepted_tls12() -> None:
    shake = parse_s_client(TLS12_ACCEPTED)
    assert shake.accepted and shake.protocol == "TLSv1.2"
    assert shake.cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert shake.temp_key == "ECDH, prime256v1, 256 bits" and shake.alpn == "http/1.1"
    assert shake.secure_renegotiation is True and shake.compression == "NONE"
    assert shake.ocsp_stapled is False and shake.verify_code == 0


def test_parse_prefers_the_session_protocol_over_the_suite_version() -> None:
    shake = parse_s_client(TLS11_NEW_LINE_SAYS_TLS10)
    assert shake.protocol == "TLSv1.1" and shake.verify_code == 21
    assert shake.verify_text == "unable to verify the first certificate"


def test_parse_tls13_without_a_session_block() -> None:
    shake = parse_s_client(TLS13_WITHOUT_SESSION)
    assert shake.accepted and shake.protocol == "TLSv1.3"
    assert shake.cipher == "TLS_AES_256_GCM_SHA384" and shake.temp_key == "X25519, 253 bits"


def test_parse_refused_and_cannot_offer() -> None:
    refused = parse_s_client(REFUSED)
    assert not refused.accepted and not refused.offer_impossible and refused.protocol is None
    impossible = parse_s_client(CANNOT_OFFER)
    assert not impossible.accepted and impossible.offer_impossible
    assert not parse_s_client("").accepted
    no_sslv3 = parse_s_client("s_client: Unknown option: -ssl3\ns_client: Use -help for summary.\n")
    assert no_sslv3.offer_impossible
