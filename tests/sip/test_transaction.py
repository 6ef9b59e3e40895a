"""Transactions (RFC 3261 17, RFC 6026) between two in-memory connections, virtual clock."""

from __future__ import annotations

import pytest

from sip_gateway.sip.errors import LocalProtocolError
from sip_gateway.sip.events import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimedOut,
)
from sip_gateway.sip.message import build_response
from sip_gateway.sip.transaction import (
    TABLES,
    Kind,
    TxState,
    build_cancel,
)

from .pair import Pair, branch, make_request


def _requests(pair: Pair) -> list[RequestReceived]:
    return [e for e in pair.server_events if isinstance(e, RequestReceived)]


def _responses(pair: Pair) -> list[int]:
    return [e.response.status_code for e in pair.client_events if isinstance(e, ResponseReceived)]


@pytest.mark.parametrize("reliable", [True, False])
def test_invite_200_ack_bye(reliable: bool) -> None:
    pair = Pair(reliable=reliable)
    invite = make_request("INVITE")
    tid = pair.client.send_request(invite, pair.now)
    pair.pump()
    (received,) = _requests(pair)
    assert received.request.method == "INVITE"
    assert _responses(pair) == [100]  # 100 Trying from the server transaction
    ringing = build_response(received.request, 180, to_tag="bob-tag")
    pair.server.send_response(received.transaction_id, ringing, pair.now)
    ok = build_response(received.request, 200, to_tag="bob-tag")
    pair.server.send_response(received.transaction_id, ok, pair.now)
    pair.pump()
    assert _responses(pair) == [100, 180, 200]
    assert pair.client.transactions.get(tid).state is TxState.ACCEPTED  # type: ignore[union-attr]
    ack = make_request("ACK", to_tag="bob-tag")
    assert pair.client.send_request(ack, pair.now) is None
    pair.pump()
    assert any(isinstance(e, AckReceived) for e in pair.server_events)
    pair.advance(32.1)  # Timer L and M: 64*T1
    assert len(pair.client.transactions) == 0
    assert len(pair.server.transactions) == 0
    bye = make_request("BYE", seq=2, to_tag="bob-tag")
    pair.client.send_request(bye, pair.now)
    pair.pump()
    bye_rx = _requests(pair)[-1]
    pair.server.send_response(bye_rx.transaction_id, build_response(bye_rx.request, 200), pair.now)
    pair.pump()
    assert _responses(pair)[-1] == 200
    if reliable:  # Timer J and K are zero on reliable transports
        assert len(pair.client.transactions) == 0
        assert len(pair.server.transactions) == 0


def test_invite_rejected_gets_ack_inside_transaction() -> None:
    pair = Pair()
    pair.client.send_request(make_request("INVITE"), pair.now)
    pair.pump()
    (received,) = _requests(pair)
    busy = build_response(received.request, 486, to_tag="bob-tag")
    pair.server.send_response(received.transaction_id, busy, pair.now)
    pair.pump()
    assert _responses(pair) == [100, 486]
    assert pair.sent_by("c->s") == [
        "INVITE sips:bob@127.0.0.1:5061 SIP/2.0",
        "ACK sips:bob@127.0.0.1:5061 SIP/2.0",
    ]
    # the ACK for the non-2xx is absorbed by the server transaction, not passed to the TU
    assert not any(isinstance(e, AckReceived) for e in pair.server_events)
    assert len(pair.server.transactions) == 0  # Confirmed, then Timer I = 0 on TLS
    assert len(pair.client.transactions) == 0  # Completed, then Timer D = 0 on TLS


def test_timer_b_times_out_an_unanswered_invite() -> None:
    pair = Pair()
    pair.drop_to_server = 1
    tid = pair.client.send_request(make_request("INVITE"), pair.now)
    pair.pump()
    pair.advance(31.9)
    assert not any(isinstance(e, TransactionTimedOut) for e in pair.client_events)
    pair.advance(0.2)
    assert TransactionTimedOut(transaction_id=tid, timer="B") in pair.client_events  # type: ignore[arg-type]


def test_unreliable_transport_retransmits_with_backoff() -> None:
    pair = Pair(reliable=False)
    pair.drop_to_server = 3
    pair.client.send_request(make_request("OPTIONS"), pair.now)
    pair.pump()
    pair.advance(3.6)  # E fires at 0.5, 1.5, 3.5: the fourth copy gets through
    assert len(_requests(pair)) == 1
    assert pair.sent_by("c->s").count("OPTIONS sips:bob@127.0.0.1:5061 SIP/2.0") == 4


def test_timer_h_when_ack_never_comes() -> None:
    pair = Pair()
    pair.client.send_request(make_request("INVITE"), pair.now)
    pair.pump()
    (received,) = _requests(pair)
    # the client is cut off before the final response arrives, so no ACK ever comes
    pair.server.send_response(
        received.transaction_id, build_response(received.request, 404), pair.now
    )
    pair.server.data_to_send()
    pair.advance(32.1)
    assert any(isinstance(e, TransactionTimedOut) and e.timer == "H" for e in pair.server_events)


def test_request_retransmission_gets_last_response() -> None:
    pair = Pair()
    invite = make_request("INVITE")
    pair.client.send_request(invite, pair.now)
    pair.pump()
    (received,) = _requests(pair)
    pair.server.send_response(
        received.transaction_id, build_response(received.request, 180, to_tag="x"), pair.now
    )
    pair.pump()
    pair.server.receive_data(invite.to_bytes(), pair.now)  # same branch: a retransmission
    assert pair.server.data_to_send().startswith(b"SIP/2.0 180 ")
    assert len(_requests(pair)) == 1


def test_cancel_pending_invite() -> None:
    pair = Pair()
    invite = make_request("INVITE")
    invite_tid = pair.client.send_request(invite, pair.now)
    pair.pump()
    (received,) = _requests(pair)
    pair.client.send_request(build_cancel(invite), pair.now)
    pair.pump()
    cancel = [e for e in pair.server_events if isinstance(e, CancelReceived)]
    assert [c.transaction_id for c in cancel] == [received.transaction_id]
    pair.server.send_response(
        received.transaction_id, build_response(received.request, 487, to_tag="t"), pair.now
    )
    pair.pump()
    by_tid = {
        (e.transaction_id, e.response.status_code)
        for e in pair.client_events
        if isinstance(e, ResponseReceived)
    }
    assert (invite_tid, 487) in by_tid
    assert sorted(_responses(pair)) == [100, 200, 487]


def test_cancel_without_invite_gets_481() -> None:
    pair = Pair()
    invite = make_request("INVITE")
    pair.client.send_request(build_cancel(invite), pair.now)
    pair.pump()
    assert _responses(pair) == [481]


def test_second_final_response_is_a_local_error() -> None:
    pair = Pair()
    pair.client.send_request(make_request("OPTIONS"), pair.now)
    pair.pump()
    (received,) = _requests(pair)
    pair.server.send_response(
        received.transaction_id, build_response(received.request, 200), pair.now
    )
    with pytest.raises(LocalProtocolError):
        pair.server.send_response(
            received.transaction_id, build_response(received.request, 500), pair.now
        )


def test_2xx_retransmission_reaches_tu_in_accepted() -> None:
    pair = Pair()
    pair.client.send_request(make_request("INVITE"), pair.now)
    pair.pump()
    (received,) = _requests(pair)
    ok = build_response(received.request, 200, to_tag="bob-tag")
    pair.server.send_response(received.transaction_id, ok, pair.now)
    pair.server.send_response(received.transaction_id, ok, pair.now)  # TU retransmits its 2xx
    pair.pump()
    assert _responses(pair) == [100, 200, 200]


def test_transport_failure_times_out_pending_client_transactions() -> None:
    pair = Pair()
    tid = pair.client.send_request(make_request("OPTIONS"), pair.now)
    pair.client.connection_lost(pair.now)
    events = []
    while (e := pair.client.next_event()) is not None:
        events.append(e)
    assert TransactionTimedOut(transaction_id=tid, timer="transport") in events  # type: ignore[arg-type]
    assert TransactionTerminated(transaction_id=tid) in events  # type: ignore[arg-type]


def test_ack_is_not_a_client_transaction() -> None:
    from sip_gateway.sip.transaction import TransactionLayer

    with pytest.raises(LocalProtocolError):
        TransactionLayer().send_request(make_request("ACK"), 0.0)


def test_duplicate_branch_is_refused() -> None:
    pair = Pair()
    br = branch()
    pair.client.send_request(make_request("OPTIONS", br=br), pair.now)
    with pytest.raises(LocalProtocolError):
        pair.client.send_request(make_request("OPTIONS", br=br), pair.now)


def test_tables_only_name_states_of_their_machine() -> None:
    allowed = {
        Kind.ICT: {
            TxState.CALLING,
            TxState.PROCEEDING,
            TxState.ACCEPTED,
            TxState.COMPLETED,
            TxState.TERMINATED,
        },
        Kind.NICT: {TxState.TRYING, TxState.PROCEEDING, TxState.COMPLETED, TxState.TERMINATED},
        Kind.IST: {
            TxState.PROCEEDING,
            TxState.ACCEPTED,
            TxState.COMPLETED,
            TxState.CONFIRMED,
            TxState.TERMINATED,
        },
        Kind.NIST: {TxState.TRYING, TxState.PROCEEDING, TxState.COMPLETED, TxState.TERMINATED},
    }
    for kind, table in TABLES.items():
        for (state, _), (new_state, _) in table.items():
            assert state in allowed[kind] and new_state in allowed[kind]


def test_rfc2543_request_without_magic_cookie_matches_its_retransmission() -> None:
    pair = Pair()
    old = make_request("OPTIONS", br="abc123")
    pair.server.receive_data(old.to_bytes(), 0.0)
    pair.server.receive_data(old.to_bytes(), 0.0)
    events = []
    while (e := pair.server.next_event()) is not None:
        events.append(e)
    assert len([e for e in events if isinstance(e, RequestReceived)]) == 1
