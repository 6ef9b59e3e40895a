"""Hypothesis: hostile header values and numbers never raise anything but the package's
errors; the call-state table is closed under any input sequence."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from sip_gateway.trunk import (
    CallState,
    InvalidNumberError,
    SessionExpires,
    SessionTimer,
    normalize_e164,
)
from sip_gateway.trunk.state import TRANSITIONS, CallInput, advance

from .test_session_timer import request, response

HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(HEADER_TEXT)
def test_session_expires_parses_or_refuses(text):
    try:
        value = SessionExpires.parse(text)
    except RemoteProtocolError as exc:
        assert exc.status_code == 400
    else:
        assert 0 <= value.seconds <= 2**31 - 1
        assert SessionExpires.parse(str(value)) == value


@settings(max_examples=300, deadline=None)
@given(HEADER_TEXT, HEADER_TEXT, st.booleans())
def test_uas_answer_on_hostile_headers(expires, min_se, supported):
    headers = [("Session-Expires", expires), ("Min-SE", min_se)]
    if supported:
        headers.append(("Supported", "timer"))
    timer = SessionTimer(session_expires=1800, min_se=90)
    try:
        answer = timer.answer(request(*headers), now=0.0)
    except RemoteProtocolError as exc:
        assert exc.status_code in (400, 422)
    else:
        assert answer and timer.active and timer.interval >= 90


@settings(max_examples=300, deadline=None)
@given(HEADER_TEXT)
def test_uac_on_hostile_2xx_and_422(text):
    timer = SessionTimer(session_expires=1800, min_se=90)
    assert timer.handle_too_small(response(422, ("Min-SE", text))) in (True, False)
    with contextlib.suppress(RemoteProtocolError):
        timer.handle_success(response(200, ("Session-Expires", text)), now=0.0)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30), st.sampled_from([None, "1", "44"]))
def test_normalize_e164_returns_e164_or_refuses(text, country):
    try:
        number = normalize_e164(text, country_code=country)
    except InvalidNumberError as exc:
        assert exc.status_code == 484
    else:
        assert number[0] == "+" and number[1:].isdigit() and 2 <= len(number) <= 16
        assert number[1] != "0"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(CallInput)), max_size=12))
def test_call_state_table(inputs):
    state = CallState.CALLING
    for event in inputs:
        try:
            state = advance(state, event)
        except LocalProtocolError:
            assert (state, event) not in TRANSITIONS
        else:
            assert state in CallState
    # a terminated leg absorbs everything that can still arrive
    for event in (
        CallInput.ANSWERED,
        CallInput.CANCEL,
        CallInput.HANGUP,
        CallInput.ENDED,
        CallInput.FAILED,
    ):
        assert advance(CallState.TERMINATED, event) is CallState.TERMINATED
