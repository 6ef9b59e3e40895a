"""The bridged call's transition table: every phase reachable, the end absorbing, no surprises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.call.errors import CallStateError
from bridge.call.state import TRANSITIONS, CallInput, CallPhase, advance

P, I = CallPhase, CallInput  # noqa: E741 - the table's own short names


@pytest.mark.parametrize(
    ("inputs", "phases"),
    [
        (
            [I.RINGING, I.ANSWERED, I.HANGUP, I.LEGS_ENDED],
            [P.RINGING, P.ANSWERED, P.ENDING, P.ENDED],
        ),
        (
            [I.EARLY_MEDIA, I.RINGING, I.ANSWERED, I.FAILED, I.LEGS_ENDED],
            [P.EARLY_MEDIA, P.EARLY_MEDIA, P.ANSWERED, P.ENDING, P.ENDED],
        ),
        (
            [I.RINGING, I.EARLY_MEDIA, I.HANGUP, I.ANSWERED],
            [P.RINGING, P.EARLY_MEDIA, P.ENDING, P.ENDING],
        ),
        ([I.FAILED, I.LEGS_ENDED, I.HANGUP], [P.ENDING, P.ENDED, P.ENDED]),
    ],
    ids=["answered-then-hung-up", "early-media-then-failed", "answer-races-hang-up", "refused"],
)
def test_call_lifecycles(inputs: list[CallInput], phases: list[CallPhase]) -> None:
    phase, seen = P.DIALING, []
    for event in inputs:
        phase = advance(phase, event)
        seen.append(phase)
    assert seen == phases


def test_every_phase_is_reachable_and_only_ended_is_final() -> None:
    reachable, frontier = {P.DIALING}, [P.DIALING]
    while frontier:
        phase = frontier.pop()
        for (source, _event), target in TRANSITIONS.items():
            if source is phase and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(CallPhase)
    assert {target for (source, _e), target in TRANSITIONS.items() if source is P.ENDED} == {
        P.ENDED
    }
    for phase in set(CallPhase) - {P.ENDED}:  # every live phase can be hung up
        assert (phase, I.HANGUP) in TRANSITIONS or phase is P.ENDING


def test_a_call_cannot_ring_or_answer_once_ended() -> None:
    for event in (I.RINGING, I.EARLY_MEDIA, I.ANSWERED):
        with pytest.raises(CallStateError):
            advance(P.ENDED, event)
    with pytest.raises(CallStateError):
        advance(P.DIALING, I.LEGS_ENDED)  # the legs end only after the call started ending


@given(st.lists(st.sampled_from(list(CallInput)), max_size=30))
def test_any_input_sequence_moves_through_the_table_or_is_refused(events: list[CallInput]) -> None:
    phase = P.DIALING
    for event in events:
        try:
            new = advance(phase, event)
        except CallStateError:
            assert (phase, event) not in TRANSITIONS
            continue
        assert TRANSITIONS[(phase, event)] is new
        if phase in (P.ENDING, P.ENDED):
            assert new in (P.ENDING, P.ENDED)  # nothing revives a call that is ending
        phase = new
