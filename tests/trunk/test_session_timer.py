"""RFC 4028 session timer negotiation and deadlines on a virtual clock (sans-IO)."""

from __future__ import annotations

import pytest

from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.headers import Headers
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.uri import parse_uri
from sip_gateway.trunk import (
    Refresher,
    SessionExpires,
    SessionIntervalTooSmallError,
    SessionTimer,
    TimerAction,
)


def request(*headers: tuple[str, str]) -> SipRequest:
    hdrs = Headers(
        [
            ("Via", "SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKx"),
            ("From", "<sip:a@x>;tag=1"),
            ("To", "<sip:b@y>"),
            ("Call-ID", "c1"),
            ("CSeq", "1 INVITE"),
            *headers,
        ]
    )
    return SipRequest(method="INVITE", uri=parse_uri("sip:b@y"), headers=hdrs)


def response(status: int, *headers: tuple[str, str]) -> SipResponse:
    hdrs = Headers(
        [
            ("Via", "SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKx"),
            ("From", "<sip:a@x>;tag=1"),
            ("To", "<sip:b@y>;tag=2"),
            ("Call-ID", "c1"),
            ("CSeq", "1 INVITE"),
            *headers,
        ]
    )
    return SipResponse(status_code=status, reason="x", headers=hdrs)


def timer(se: int = 1800, min_se: int = 90) -> SessionTimer:
    return SessionTimer(session_expires=se, min_se=min_se)


def test_session_expires_header_round_trip():
    value = SessionExpires.parse("1800 ; Refresher=UAC")
    assert (value.seconds, value.refresher) == (1800, "uac")
    assert str(value) == "1800;refresher=uac"
    for bad in ("", "abc", "-1", "90;refresher=proxy", "99999999999"):
        with pytest.raises(RemoteProtocolError):
            SessionExpires.parse(bad)


def test_uac_headers_and_the_uas_as_refresher():
    t = timer()
    assert t.request_headers() == [
        ("Supported", "timer"),
        ("Session-Expires", "1800"),
        ("Min-SE", "90"),
    ]
    t.handle_success(
        response(200, ("Session-Expires", "1200;refresher=uas"), ("Require", "timer")), now=0.0
    )
    assert (t.interval, t.refresher) == (1200, Refresher.REMOTE)
    # the non-refresher gives up at interval - min(32, interval/3)
    assert t.get_timer() == 1200 - 32
    assert t.handle_timer(1167.0) is None
    assert t.handle_timer(1168.0) is TimerAction.EXPIRE
    assert t.get_timer() is None and not t.active


def test_uac_as_refresher_refreshes_at_half_then_expires_if_refresh_fails():
    t = timer()
    t.handle_success(response(200, ("Session-Expires", "90;refresher=uac")), now=100.0)
    assert t.refresher is Refresher.LOCAL
    assert t.get_timer() == 145.0
    assert t.handle_timer(145.0) is TimerAction.REFRESH
    assert t.request_headers(refresh=True)[1] == ("Session-Expires", "90;refresher=uac")
    assert t.get_timer() == 100.0 + 90 - 30  # min(32, 90/3) = 30
    # a successful refresh restarts the interval
    t.handle_success(response(200, ("Session-Expires", "90;refresher=uac")), now=146.0)
    assert t.get_timer() == 191.0
    # ... an unsuccessful one ends in EXPIRE
    assert t.handle_timer(191.0) is TimerAction.REFRESH
    assert t.handle_timer(206.0) is TimerAction.EXPIRE


def test_2xx_without_session_expires_means_no_timer():
    t = timer()
    t.handle_success(response(200), now=0.0)
    assert not t.active and t.get_timer() is None


def test_422_raises_the_interval_once_and_never_loops():
    t = timer(se=90, min_se=90)
    assert t.handle_too_small(response(422, ("Min-SE", "300")))
    assert dict(t.request_headers()) == {
        "Supported": "timer",
        "Session-Expires": "300",
        "Min-SE": "300",
    }
    assert not t.handle_too_small(response(422, ("Min-SE", "300")))  # no progress: stop
    assert not t.handle_too_small(response(422, ("Min-SE", "120")))
    assert not t.handle_too_small(response(422))
    assert not t.handle_too_small(response(422, ("Min-SE", "x")))


def test_uas_answers_with_require_timer_and_keeps_the_uac_as_refresher():
    t = timer()
    headers = t.answer(
        request(("Supported", "timer"), ("Session-Expires", "600"), ("Min-SE", "90")), now=0.0
    )
    assert headers == [("Session-Expires", "600;refresher=uac"), ("Require", "timer")]
    assert t.refresher is Refresher.REMOTE and t.get_timer() == 600 - 32


def test_uas_honours_the_requested_refresher_and_caps_the_interval():
    t = timer(se=1800)
    headers = t.answer(
        request(("Supported", "timer"), ("Session-Expires", "7200;refresher=uas")), now=0.0
    )
    assert headers[0] == ("Session-Expires", "1800;refresher=uas")
    assert t.refresher is Refresher.LOCAL and t.get_timer() == 900.0


def test_uas_refreshes_itself_when_the_uac_lacks_the_extension():
    t = timer()
    headers = t.answer(
        request(("Session-Expires", "1800;refresher=uac")), now=0.0
    )  # a proxy added it
    assert headers == [("Session-Expires", "1800;refresher=uas")]
    assert t.refresher is Refresher.LOCAL


def test_uas_without_any_timer_header_runs_none():
    t = timer()
    assert t.answer(request(), now=0.0) == []
    assert not t.active


def test_uas_offers_a_timer_to_a_supporting_uac():
    t = timer(se=900)
    assert t.answer(request(("Supported", "timer")), now=0.0) == [
        ("Session-Expires", "900;refresher=uac"),
        ("Require", "timer"),
    ]


def test_uas_refuses_a_too_small_interval_with_422():
    t = timer(min_se=120)
    with pytest.raises(SessionIntervalTooSmallError) as failure:
        t.answer(
            request(("Supported", "timer"), ("Session-Expires", "90"), ("Min-SE", "90")), now=0.0
        )
    assert failure.value.status_code == 422
    assert failure.value.headers == (("Min-SE", "120"),)
    assert not t.active


def test_constructor_checks():
    with pytest.raises(ValueError):
        SessionTimer(session_expires=60, min_se=90)
