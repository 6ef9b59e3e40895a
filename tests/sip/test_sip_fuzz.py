"""Hypothesis: hostile input only raises RemoteProtocolError; serialize -> parse is identity."""

from __future__ import annotations

import contextlib
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
)
from sip_gateway.sip.message import SipRequest, SipResponse, parse_message
from sip_gateway.sip.parser import KeepAlive, RejectedFrame, StreamFramer
from sip_gateway.sip.uri import AbsoluteUri, SipUri, parse_uri

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALNUM = string.ascii_letters + string.digits
TOKEN = ALNUM + "-.!%*_+`'~"
MARK = "-_.!~*'()"
USER_CHARS = ALNUM + MARK + "&=+$,;?/"
PASSWORD_CHARS = ALNUM + MARK + "&=+$,"
PARAM_CHARS = ALNUM + MARK + "[]/:&+$"
HEADER_CHARS = ALNUM + MARK + "[]/?:+$"

tokens = st.text(TOKEN, min_size=1, max_size=10)
escapes = st.sampled_from(["%41", "%00", "%3a", "%FF", "%25"])


def escaped(chars: str, min_size: int = 1) -> st.SearchStrategy[str]:
    return st.lists(
        st.one_of(st.text(chars, min_size=1, max_size=4), escapes), min_size=min_size, max_size=4
    ).map("".join)


labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
hostnames = st.lists(labels, min_size=1, max_size=3).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6_refs = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hosts = st.one_of(hostnames, ipv4, ipv6_refs)
ports = st.one_of(st.none(), st.integers(0, 65535))
safe_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)


@st.composite
def sip_uris(draw: st.DrawFn, *, with_headers: bool = True) -> SipUri:
    user = draw(st.one_of(st.none(), escaped(USER_CHARS)))
    password = draw(st.one_of(st.none(), escaped(PASSWORD_CHARS, 0))) if user else None
    params = draw(
        st.lists(
            st.tuples(escaped(PARAM_CHARS), st.one_of(st.none(), escaped(PARAM_CHARS))), max_size=3
        )
    )
    headers = draw(st.lists(st.tuples(escaped(HEADER_CHARS), escaped(HEADER_CHARS, 0)), max_size=2))
    return SipUri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=password,
        host=draw(hosts),
        port=draw(ports),
        params=tuple(params),
        headers=tuple(headers) if with_headers else (),
    )


absolute_uris = st.builds(
    AbsoluteUri,
    scheme=st.from_regex(r"[a-z][a-z0-9+.\-]{0,8}", fullmatch=True).filter(
        lambda s: s not in ("sip", "sips")
    ),
    opaque=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='<>"\\'),
        min_size=1,
        max_size=20,
    ),
)
uris = st.one_of(sip_uris(), absolute_uris)

gen_values = st.one_of(
    st.none(),
    tokens,
    safe_text.map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
)
header_params = st.lists(st.tuples(tokens, gen_values), max_size=3).map(tuple)

name_addrs = st.builds(
    NameAddr,
    display_name=st.one_of(st.none(), safe_text),
    uri=uris,
    params=header_params,
)


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params: list[tuple[str, str | None]] = []
    if draw(st.booleans()):
        params.append(("branch", "z9hG4bK" + draw(st.text(TOKEN, max_size=8))))
    if draw(st.booleans()):
        params.append(("rport", draw(st.one_of(st.none(), st.integers(0, 65535).map(str)))))
    if draw(st.booleans()):
        params.append(("received", draw(st.one_of(ipv4, st.ip_addresses(v=6).map(str)))))
    special = {"branch", "rport", "received", "ttl", "maddr"}
    extra = draw(
        st.lists(
            st.tuples(tokens.filter(lambda t: t.lower() not in special), gen_values), max_size=2
        )
    )
    return Via(
        transport=draw(st.sampled_from(["UDP", "TCP", "TLS", "WS", "WSS", "SCTP", "X-FOO"])),
        host=draw(hosts),
        port=draw(ports),
        params=tuple(params + extra),
    )


cseqs = st.builds(CSeq, seq=st.integers(0, 2**31 - 1), method=tokens)


@st.composite
def header_sets(draw: st.DrawFn, method: str | None = None) -> Headers:
    headers = Headers()
    for via in draw(st.lists(vias(), min_size=1, max_size=3)):
        headers.add("Via", str(via))
    headers.add("From", str(draw(name_addrs)))
    headers.add("To", str(draw(name_addrs)))
    headers.add(draw(st.sampled_from(["Call-ID", "i"])), draw(tokens) + "@" + draw(hostnames))
    cseq = draw(cseqs)
    headers.add("CSeq", str(CSeq(seq=cseq.seq, method=method or cseq.method)))
    if draw(st.booleans()):
        headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
    contacts = draw(st.lists(name_addrs, max_size=2))
    if contacts:
        headers.add("m", ", ".join(str(c) for c in contacts))
    for name, value in draw(st.lists(st.tuples(tokens, safe_text), max_size=4)):
        headers.add("X-" + name, value)
    return headers


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS"]), tokens))
    return SipRequest(
        method=method,
        uri=draw(st.one_of(sip_uris(with_headers=False), absolute_uris)),
        headers=draw(header_sets(method)),
        body=draw(st.binary(max_size=64)),
    )


reasons = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\t"), max_size=20
)


@st.composite
def responses(draw: st.DrawFn) -> SipResponse:
    return SipResponse(
        status_code=draw(st.integers(100, 699)),
        reason=draw(reasons),
        headers=draw(header_sets()),
        body=draw(st.binary(max_size=64)),
    )


messages = st.one_of(requests(), responses())


# -- round trips -------------------------------------------------------------------------


@FAST
@given(uris)
def test_uri_round_trip(uri):
    assert parse_uri(str(uri)) == uri


@FAST
@given(name_addrs)
def test_name_addr_round_trip(addr):
    assert parse_name_addr(str(addr)) == addr


@SLOW
@given(st.lists(name_addrs, min_size=1, max_size=3))
def test_name_addr_list_round_trip(addrs):
    assert parse_name_addr_list(", ".join(str(a) for a in addrs)) == addrs


@settings(FAST, max_examples=100)
@given(st.lists(vias(), min_size=1, max_size=3))
def test_via_round_trip(values):
    assert parse_via(" , ".join(str(v) for v in values)) == values


@FAST
@given(cseqs)
def test_cseq_round_trip(cseq):
    assert parse_cseq(str(cseq)) == cseq


@settings(FAST, max_examples=100)
@given(messages)
def test_message_round_trip(message):
    wire = message.to_bytes()
    again = parse_message(wire)
    assert again == message
    assert again.to_bytes() == wire


@SLOW
@given(st.lists(messages, min_size=1, max_size=3), st.data())
def test_framer_over_any_chunking(items, data):
    wire = b"".join(m.to_bytes() for m in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    framer = StreamFramer()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        framer.receive_data(wire[start:end])
        while (item := framer.next_message()) is not None:
            out.append(item)
    assert out == items
    assert framer.buffered == 0


# -- hostile input -------------------------------------------------------------------------


def only_remote_errors(function, *args):
    with contextlib.suppress(RemoteProtocolError):
        return function(*args)
    return None


def assert_message_reserializes(data: bytes) -> None:
    """Whatever parses serializes to bytes that parse and serialize to the same bytes."""
    message = only_remote_errors(parse_message, data)
    if message is not None:
        wire = message.to_bytes()
        assert parse_message(wire).to_bytes() == wire


HEADER_PARSERS = (parse_uri, parse_name_addr, parse_name_addr_list, parse_via, parse_cseq)


def assert_headers_reparse(text: str) -> None:
    """Each header parser accepts ``text`` or raises RemoteProtocolError, and whatever it
    accepts serializes to text that parses to the same value."""
    for function in HEADER_PARSERS:
        value = only_remote_errors(function, text)
        if value is not None:
            wire = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            assert function(wire) == value


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_into_parse_message(data):
    assert_message_reserializes(data)


SEEDS = [
    b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
    b'To: "x" <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n'
    b"Contact: <sip:e@[::1]:5>\r\nl: 2\r\n\r\nhi",
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 1.2.3.4:5;rport=6;received=::1\r\nRoute: <sip:p;lr>\r\n\r\n",
]


@FAST
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(0, 400), st.binary(min_size=0, max_size=3)), min_size=1, max_size=4
    ),
)
def test_mutated_messages_into_parse_message(seed, edits):
    data = bytearray(seed)
    for offset, replacement in edits:
        position = offset % (len(data) + 1)
        data[position : position + len(replacement) // 2 + 1] = replacement
    assert_message_reserializes(bytes(data))


@FAST
@given(st.lists(st.binary(max_size=80), max_size=6), st.sampled_from([64, 300, 65536]))
def test_any_bytes_into_the_framer(chunks, limit):
    framer = StreamFramer(max_message_size=limit)
    failed = False
    for chunk in chunks:
        framer.receive_data(b"\r\n" + chunk if chunk[:1] == b"x" else chunk)
        try:
            while (item := framer.next_message()) is not None:
                assert isinstance(item, (SipRequest, SipResponse, KeepAlive, RejectedFrame))
                assert not isinstance(item, RejectedFrame) or isinstance(
                    item.error, RemoteProtocolError
                )
        except RemoteProtocolError:
            failed = True
            break
    if failed:
        try:
            framer.next_message()
        except RemoteProtocolError:
            pass
        else:
            raise AssertionError("a failed framer must stay failed")


@FAST
@given(st.text(max_size=60))
def test_any_text_into_the_header_parsers(text):
    assert_headers_reparse(text)


@FAST
@given(st.text(alphabet=TOKEN + ' <>";=,:@[]/?\\\t', max_size=60))
def test_grammar_shaped_text_into_the_header_parsers(text):
    assert_headers_reparse(text)
