"""The security record's own logic: key freshness, freezing, and what it never holds."""

from __future__ import annotations

import json
import secrets

from bridge.security import PSTN_CAVEAT, KeyHistory, SecurityRecord
from sip_gateway.sdp import MediaConfig, SdesCrypto
from sip_gateway.sdp.crypto import CryptoAttribute
from sip_gateway.sdp.media_config import Codec, Direction

SUITE = "AEAD_AES_128_GCM"
KEY = 28  # AEAD_AES_128_GCM: 16-byte master key + 12-byte salt


def _config(local: bytes, remote: bytes) -> MediaConfig:
    return MediaConfig(
        codecs=(Codec(payload_type=0, name="PCMU", clock_rate=8000),),
        telephone_event=None,
        ptime=20,
        remote_address=("127.0.0.1", 4000),
        remote_rtcp_address=("127.0.0.1", 4000),
        rtcp_mux=True,
        direction=Direction.SENDRECV,
        crypto=SdesCrypto(
            suite=SUITE,
            tag=1,
            remote_key=remote,
            local_key=local,
            local_attribute=CryptoAttribute.create(tag=1, suite=SUITE, key_salt=local),
            remote_attribute=CryptoAttribute.create(tag=1, suite=SUITE, key_salt=remote),
        ),
    )


def _record(call_id: str) -> SecurityRecord:
    return SecurityRecord(call_id=call_id, direction="outbound", from_party="a", to_party="+1")


def test_keys_are_fresh_once_per_call_and_never_when_echoed() -> None:
    history = KeyHistory()
    ours, theirs = secrets.token_bytes(KEY), secrets.token_bytes(KEY)
    first = _record("c-1")
    first.observe_gateway_media(_config(ours, theirs), history)
    first.observe_gateway_media(_config(ours, theirs), history)  # a re-INVITE, same keys
    assert first.gateway_keys_fresh is True
    reused = _record("c-2")
    reused.observe_gateway_media(_config(ours, secrets.token_bytes(KEY)), history)
    assert reused.gateway_keys_fresh is False
    echoed = _record("c-3")
    mine = secrets.token_bytes(KEY)
    echoed.observe_gateway_media(_config(mine, mine), history)
    assert echoed.gateway_keys_fresh is False
    assert "c-1" not in repr(history) and ours.hex() not in repr(history)


def test_the_history_is_bounded() -> None:
    history = KeyHistory(capacity=3)
    keys = [secrets.token_bytes(KEY) for _ in range(5)]
    for index, key in enumerate(keys):
        assert history.fresh(f"c-{index}", key, b"x" * KEY)
    assert history.fresh("c-9", keys[0], b"x" * KEY)  # forgotten: no longer known


def test_a_frozen_record_ignores_updates_and_renders_no_key() -> None:
    record = _record("c-4")
    key = secrets.token_bytes(KEY)
    record.observe_gateway_media(_config(key, secrets.token_bytes(KEY)), KeyHistory())
    record.freeze("caller-hangup", 200)
    record.refuse("plain-rtp", "too late")
    record.observe_gateway_media(_config(secrets.token_bytes(KEY), key), KeyHistory())
    rendered = record.as_dict()
    assert rendered["policy_refusals"] == []
    assert rendered["end_reason"] == "caller-hangup"
    assert rendered["sip_status"] == 200
    assert rendered["caveats"] == [PSTN_CAVEAT]
    assert rendered["end_to_end_encrypted"] is False
    gateway = next(leg for leg in rendered["legs"] if leg["leg"] == "gateway")
    assert gateway["media"]["crypto_suite"] == SUITE
    assert gateway["encrypted"] is None  # no TLS session observed: not claimed
    text = json.dumps(rendered)
    assert key.hex() not in text and "inline:" not in text
