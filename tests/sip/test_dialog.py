"""Dialogs (RFC 3261 12): creation, in-dialog requests, routing, 481 and CSeq order."""

from __future__ import annotations

import pytest

from sip_gateway.sip.dialog import Dialog, DialogState, DialogTable
from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.headers import parse_name_addr, parse_via
from sip_gateway.sip.message import build_response

from .pair import make_request


def _answered(rr: tuple[str, ...] = ()) -> tuple[Dialog, Dialog]:
    invite = make_request("INVITE", extra=tuple(("Record-Route", r) for r in rr))
    ok = build_response(invite, 200, to_tag="bob-tag")
    ok.headers.add("Contact", "<sips:bob@192.0.2.20:5061;transport=tls>")
    for r in rr:
        ok.headers.add("Record-Route", r)
    uac = Dialog.for_uac(invite, ok)
    uas = Dialog.for_uas(invite, ok, local_contact=parse_name_addr("<sips:bob@192.0.2.20:5061>"))
    return uac, uas


def _via() -> object:
    return parse_via("SIP/2.0/TLS 127.0.0.1:5070;branch=z9hG4bKnew1;rport")[0]


def test_uac_and_uas_see_mirrored_identities() -> None:
    uac, uas = _answered()
    assert uac.id.local_tag == uas.id.remote_tag == "alice-tag"
    assert uac.id.remote_tag == uas.id.local_tag == "bob-tag"
    assert uac.state is uas.state is DialogState.CONFIRMED
    assert str(uac.remote_target) == "sips:bob@192.0.2.20:5061;transport=tls"
    assert uac.secure


def test_in_dialog_bye_uses_target_route_set_and_next_cseq() -> None:
    uac, uas = _answered(rr=("<sips:proxy2.example.net;lr>", "<sips:proxy1.example.net;lr>"))
    bye = uac.create_request("BYE", via=_via())  # type: ignore[arg-type]
    assert bye.cseq.seq == 2 and bye.cseq.method == "BYE"
    assert str(bye.uri) == "sips:bob@192.0.2.20:5061;transport=tls"
    assert bye.headers.get_all("Route") == [
        "<sips:proxy1.example.net;lr>",
        "<sips:proxy2.example.net;lr>",
    ]
    assert bye.to_addr.tag == "bob-tag" and bye.from_addr.tag == "alice-tag"
    table = DialogTable()
    table.add(uas)
    assert table.match_request(bye) is uas
    uas.receive_request(bye)
    assert uas.state is DialogState.TERMINATED


def test_strict_route_puts_target_last() -> None:
    uac, _ = _answered(rr=("<sips:strict.example.net>",))
    bye = uac.create_request("BYE", via=_via())  # type: ignore[arg-type]
    assert str(bye.uri) == "sips:strict.example.net"
    assert bye.headers.get_all("Route")[-1] == "<sips:bob@192.0.2.20:5061;transport=tls>"


def test_unknown_dialog_gets_481() -> None:
    table = DialogTable()
    with pytest.raises(RemoteProtocolError) as info:
        table.match_request(make_request("BYE", to_tag="nobody"))
    assert info.value.status_code == 481
    assert table.match_request(make_request("OPTIONS")) is None


def test_lower_cseq_gets_500() -> None:
    _, uas = _answered()
    with pytest.raises(RemoteProtocolError) as info:
        uas.receive_request(make_request("INFO", seq=1, to_tag="bob-tag"))
    assert info.value.status_code == 500


def test_reinvite_refreshes_remote_target() -> None:
    _, uas = _answered()
    reinvite = make_request("INVITE", seq=5, to_tag="bob-tag")
    reinvite.headers.set("Contact", "<sips:alice@198.51.100.9:5071;transport=tls>")
    uas.receive_request(reinvite)
    assert str(uas.remote_target) == "sips:alice@198.51.100.9:5071;transport=tls"
    assert uas.remote_seq == 5
    req = uas.create_request("INVITE", via=_via())  # type: ignore[arg-type]
    assert req.headers.get("Contact") == "<sips:bob@192.0.2.20:5061>"


def test_early_dialog_confirmed_by_2xx() -> None:
    invite = make_request("INVITE")
    ringing = build_response(invite, 180, to_tag="bob-tag")
    ringing.headers.add("Contact", "<sips:bob@192.0.2.20:5061>")
    uac = Dialog.for_uac(invite, ringing)
    assert uac.state is DialogState.EARLY
    ok = build_response(invite, 200, to_tag="bob-tag")
    ok.headers.add("Contact", "<sips:bob@192.0.2.21:5061>")
    uac.receive_response("INVITE", ok)
    assert uac.state is DialogState.CONFIRMED
    assert str(uac.remote_target) == "sips:bob@192.0.2.21:5061"
    ack = uac.create_ack(1, via=_via())  # type: ignore[arg-type]
    assert ack.cseq.seq == 1 and ack.cseq.method == "ACK"
