"""Authentication header values (RFC 3261 22 and 25.1): parse, serialize, hostile text."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.sip.auth_header import (
    DigestChallenge,
    DigestCredentials,
    UnknownAuthScheme,
    parse_challenge,
    parse_credentials,
)
from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError

RFC4475 = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "rfc4475"

# RFC 3261 section 22.2, folded over several lines as printed.
RFC3261_CHALLENGE = (
    "Digest\r\n"
    '        realm="biloxi.com",\r\n'
    '        qop="auth,auth-int",\r\n'
    '        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '        opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC3261_CREDENTIALS = (
    'Digest username="bob",\r\n'
    '        realm="biloxi.com",\r\n'
    '        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '        uri="sip:bob@biloxi.com",\r\n'
    "        qop=auth,\r\n"
    "        nc=00000001,\r\n"
    '        cnonce="0a4f113b",\r\n'
    '        response="6629fae49393a05397450978507c4ef1",\r\n'
    '        opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc3261_challenge() -> None:
    challenge = parse_challenge(RFC3261_CHALLENGE)
    assert challenge == DigestChallenge(
        realm="biloxi.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop=("auth", "auth-int"),
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    assert parse_challenge(str(challenge)) == challenge


def test_rfc3261_credentials() -> None:
    credentials = parse_credentials(RFC3261_CREDENTIALS)
    assert credentials == DigestCredentials(
        username="bob",
        realm="biloxi.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="sip:bob@biloxi.com",
        response="6629fae49393a05397450978507c4ef1",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    assert isinstance(credentials, DigestCredentials)
    assert credentials.nonce_count == 1
    assert parse_credentials(str(credentials)) == credentials


def test_rfc7616_challenge_and_serialized_form() -> None:
    value = (
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    challenge = parse_challenge(value)
    assert isinstance(challenge, DigestChallenge)
    assert challenge.algorithm == "SHA-256"
    assert challenge.qop == ("auth", "auth-int")
    assert str(challenge) == (
        'Digest realm="http-auth@example.org", '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", '
        'algorithm=SHA-256, qop="auth,auth-int"'
    )


def test_regaut01_unknown_scheme_literal() -> None:
    parsed = parse_credentials("NoOneKnowsThisScheme opaque-data=here")
    assert parsed == UnknownAuthScheme(scheme="NoOneKnowsThisScheme", data="opaque-data=here")
    assert str(parsed) == "NoOneKnowsThisScheme opaque-data=here"


def test_regaut01_from_the_torture_file() -> None:
    path = RFC4475 / "regaut01.dat"
    if not path.exists():
        pytest.skip("RFC 4475 corpus not present")
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    (value,) = [line.split(":", 1)[1] for line in lines if line.startswith("Authorization:")]
    parsed = parse_credentials(value)
    assert isinstance(parsed, UnknownAuthScheme)
    assert parsed.scheme == "NoOneKnowsThisScheme"


def test_unknown_schemes_keep_their_data_verbatim_and_hidden() -> None:
    basic = parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    assert basic == UnknownAuthScheme(scheme="Basic", data="QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    assert "QWxh" not in repr(basic)  # Basic carries a password
    assert parse_challenge("Newauth") == UnknownAuthScheme(scheme="Newauth")
    assert parse_challenge('Basic realm="x"') == UnknownAuthScheme(scheme="Basic", data='realm="x"')


def test_quoted_pairs_and_escaping_round_trip() -> None:
    challenge = parse_challenge(r'Digest realm="a\"b\\c\d", nonce="n"')
    assert isinstance(challenge, DigestChallenge)
    assert challenge.realm == 'a"b\\cd'
    assert str(challenge).startswith(r'Digest realm="a\"b\\cd"')
    assert parse_challenge(str(challenge)) == challenge


def test_style_leniency() -> None:
    challenge = parse_challenge(
        'digest REALM = "r" ,Nonce="n",algorithm="sha-256",STALE="TRUE",qop = "auth" ,x-y=1'
    )
    assert challenge == DigestChallenge(
        realm="r", nonce="n", algorithm="sha-256", stale=True, qop=("auth",), extra=(("x-y", "1"),)
    )
    assert parse_challenge('Digest realm="r", nonce="n", stale=maybe') == DigestChallenge(
        realm="r", nonce="n"
    )


def test_unknown_directives_are_kept_and_serialized() -> None:
    credentials = parse_credentials(
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="00", '
        'userhash=false, note="a b", path=/a/b'
    )
    assert isinstance(credentials, DigestCredentials)
    assert credentials.extra == (("userhash", "false"), ("note", "a b"), ("path", "/a/b"))
    text = str(credentials)
    assert 'userhash=false, note="a b", path="/a/b"' in text
    assert parse_credentials(text) == credentials


def test_utf8_in_quoted_strings() -> None:
    credentials = parse_credentials(
        'Digest username="Jäsøn Doe", realm="api@example.org", nonce="n", uri="/", response="0"'
    )
    assert isinstance(credentials, DigestCredentials)
    assert credentials.username == "Jäsøn Doe"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        '"Digest" realm="r"',
        "Digest",
        'Digest realm="r"',  # no nonce
        'Digest nonce="n"',  # no realm
        'Digest realm="r, nonce="n"',  # unbalanced quote
        'Digest realm="r" nonce="n"',  # missing comma
        'Digest realm "r", nonce="n"',  # missing '='
        'Digest realm=, nonce="n"',  # missing value
        'Digest realm="r", nonce="n",',  # trailing comma
        'Digest realm="r",, nonce="n"',  # empty element
        'Digest realm="r", realm="s", nonce="n"',  # repeated directive
        'Digest realm="r", REALM="s", nonce="n"',  # repeated, other case
        'Digest realm="r\x01", nonce="n"',  # control character
        'Digest realm="r\\\x01", nonce="n"',  # escaped control character
        'Digest realm="r", nonce="n"\r\nVia: x',  # header injection
        'Digest realm="r", nonce="n\ud800"',  # lone surrogate
        'Digest realm="r", nonce="n", algorithm="MD5 x"',  # algorithm not a token
        'Digest realm="r", nonce="n", qop="auth,,x"',
        'Digest="r"',
        "Digest\x00 realm",
    ],
)
def test_malformed_challenges(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_challenge(value)
    assert caught.value.status_code == 400


_CRED = 'Digest username="u", realm="r", nonce="n", uri="sip:x", response="00"'


@pytest.mark.parametrize(
    "value",
    [
        'Digest realm="r", nonce="n", uri="sip:x", response="00"',  # no username
        'Digest username="u", realm="r", nonce="n", response="00"',  # no uri
        'Digest username="u", realm="r", nonce="n", uri="sip:x"',  # no response
        _CRED + ", nc=1",
        _CRED + ", nc=0000000g",
        _CRED + ", nc=000000001",
        _CRED + ', qop=auth, cnonce="c"',  # qop without nc
        _CRED + ", qop=auth, nc=00000001",  # qop without cnonce
        _CRED + ", username=v",
    ],
)
def test_malformed_credentials(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_credentials(value)


def test_serializing_refuses_unsendable_values() -> None:
    with pytest.raises(LocalProtocolError):
        str(DigestChallenge(realm="a\r\nVia: evil", nonce="n"))
    with pytest.raises(LocalProtocolError):
        str(DigestChallenge(realm="r", nonce="n", algorithm="MD5 x"))
    with pytest.raises(LocalProtocolError):
        str(DigestChallenge(realm="r", nonce="n", extra=(("realm", "x"),)))
    with pytest.raises(LocalProtocolError):
        str(DigestCredentials(username="u", realm="r", nonce="n", uri="u", response="0", nc="1"))
    with pytest.raises(LocalProtocolError):
        str(UnknownAuthScheme(scheme="Bad Scheme", data="x"))


# --- Hypothesis ------------------------------------------------------------------------

_GRAMMAR_ALPHABET = st.sampled_from(
    [*'Digestrealmnoncquspbhy="\\, =\t\r\n\x00é-8/:', "Digest ", 'realm="', 'nonce="']
)
_hostile_text = st.one_of(
    st.text(),
    st.lists(_GRAMMAR_ALPHABET, max_size=40).map("".join),
    st.lists(_GRAMMAR_ALPHABET, max_size=40).map(
        lambda parts: 'Digest realm="r", ' + "".join(parts)
    ),
)


@settings(max_examples=400, deadline=None)
@given(_hostile_text)
def test_any_text_parses_or_raises_remote_protocol_error(text: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        try:
            parsed = parse(text)
        except RemoteProtocolError as exc:
            assert exc.status_code == 400
        else:
            assert parse(str(parsed)) == parsed


_value = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"), max_size=12
)
_token = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789-.!%*_+`'~", min_size=1, max_size=8)
_extra = st.lists(
    st.tuples(_token.map(lambda t: "x-" + t), _value), max_size=3, unique_by=lambda p: p[0].lower()
).map(tuple)


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        DigestChallenge,
        realm=_value,
        nonce=_value,
        algorithm=st.none() | _token,
        qop=st.none() | st.lists(_token, min_size=1, max_size=3).map(tuple),
        opaque=st.none() | _value,
        stale=st.booleans(),
        domain=st.none() | _value,
        extra=_extra,
    )
)
def test_challenge_serialize_parse_identity(challenge: DigestChallenge) -> None:
    assert parse_challenge(str(challenge)) == challenge


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        DigestCredentials,
        username=_value,
        realm=_value,
        nonce=_value,
        uri=_value,
        response=_value,
        algorithm=st.none() | _token,
        opaque=st.none() | _value,
        extra=_extra,
    ),
    st.none()
    | st.tuples(_token, _value, st.text("0123456789abcdefABCDEF", min_size=8, max_size=8)),
)
def test_credentials_serialize_parse_identity(
    credentials: DigestCredentials, qop: tuple[str, str, str] | None
) -> None:
    if qop is not None:
        credentials = replace(credentials, qop=qop[0], cnonce=qop[1], nc=qop[2])
    assert parse_credentials(str(credentials)) == credentials
