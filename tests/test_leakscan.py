"""The secret scan finds what it must (negative controls for ``tests/leakscan.py``).

The planted secrets live in a directory outside pytest's temporary directory and the
control logger does not propagate, so the session's own scan does not see them.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets as random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sip_gateway.sdp.crypto import CryptoAttribute
from tests.leakscan import (
    CaptureLog,
    Secrets,
    find,
    mark_peer_dir,
    register_files,
    scan_files,
)


@pytest.fixture
def outside() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="leakscan-control-") as name:
        yield Path(name)


def _sdes() -> tuple[CryptoAttribute, bytes]:
    key = random.token_bytes(30)
    return CryptoAttribute.create(tag=1, suite="AES_CM_128_HMAC_SHA1_80", key_salt=key), key


def test_an_sdes_key_is_found_in_a_log_line_in_each_encoding(outside: Path) -> None:
    seen = Secrets()
    attribute, key = _sdes()
    seen.add_bytes("SDES master key", key)
    handler = CaptureLog(outside / "log.txt")
    log = logging.getLogger("tests.leakscan.control")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("offer: a=crypto:%s", attribute)
        log.info("hex %s", key.hex())
    finally:
        log.removeHandler(handler)
        handler.close()
    text = (outside / "log.txt").read_bytes()
    assert b"inline:" in text
    assert [f.kind for f in scan_files(seen, outside, set())] == ["SDES master key"]
    assert find(seen, key.hex().encode(), "hex") != []
    assert find(seen, b'{"k":"' + base64.b64encode(key) + b'"}', "json") != []
    assert find(seen, b"nothing secret here at all 0123456789abcdef", "clean") == []


def test_passwords_responses_and_private_keys_are_found_in_files(outside: Path) -> None:
    seen = Secrets()
    seen.add_text("digest password", "correct horse battery")  # not token-shaped
    response = random.token_hex(16)
    seen.add_text("digest response", response)
    pem = outside / "leaf.key"
    body = base64.b64encode(random.token_bytes(120)).decode()
    pem.write_text(
        "-----BEGIN PRIVATE KEY-----\n"
        + "\n".join(body[i : i + 64] for i in range(0, 160, 64))
        + "\n-----END PRIVATE KEY-----\n"
    )
    homes = register_files(seen, outside)
    assert homes == {pem}
    (outside / "cdr-spill.jsonl").write_text(
        json.dumps({"detail": "user typed correct horse battery"}) + "\n"
    )
    (outside / "events.jsonl").write_text(json.dumps({"auth": response}) + "\n")
    (outside / "dump.txt").write_text("key material: " + body[64:128] + "\n")
    found = {(f.kind, Path(f.where).name) for f in scan_files(seen, outside, homes)}
    assert found == {
        ("digest password", "cdr-spill.jsonl"),
        ("digest response", "events.jsonl"),
        ("private key", "dump.txt"),
    }


def test_short_secrets_are_counted_not_searched() -> None:
    seen = Secrets()
    seen.add_text("digest password", "abc")
    assert seen.count() == {}
    assert seen.too_short == 1


def test_repetitive_secrets_are_counted_not_searched() -> None:
    secrets = Secrets()
    secrets.add_text("digest password", "000000000000")  # a Hypothesis-style password
    secrets.add_text("digest password", "0a0a0a0a0a0a0a0a")
    secrets.add_text("digest password", "correct horse battery staple")
    assert secrets.count() == {"digest password": 1} and secrets.too_short == 2
    assert find(secrets, b"version 1.000000000000 0a0a0a0a0a0a0a0a0a", "control") == []


def test_a_third_party_peers_directory_is_skipped(outside: Path) -> None:
    seen = Secrets()
    response = random.token_hex(16)
    seen.add_text("digest response", response)
    (outside / "sipp-uas-1").mkdir()
    peer = mark_peer_dir(outside / "sipp-uas-1")
    (peer / "messages.log").write_text("Authorization: Digest response=" + response + "\n")
    (outside / "bridge.log").write_text("Authorization: Digest response=" + response + "\n")
    found = [Path(f.where).name for f in scan_files(seen, outside, set())]
    assert found == ["bridge.log"]


def test_the_user_database_may_hold_ha1s_and_nothing_else(outside: Path) -> None:
    seen = Secrets()
    ha1 = random.token_hex(32)
    seen.add_text("digest HA1", ha1)
    seen.add_text("digest password", "Pa55word-long-enough")
    sqlite = b"SQLite format 3\x00"
    (outside / "users-1.db").write_bytes(sqlite + b"\x00users\x00" + ha1.encode() + b"\x00")
    assert scan_files(seen, outside, set()) == []
    (outside / "users-1.db").write_bytes(sqlite + b"\x00Pa55word-long-enough\x00" + ha1.encode())
    assert [f.kind for f in scan_files(seen, outside, set())] == ["digest password"]
    (outside / "cdr-spill.jsonl").write_text(ha1)
    kinds = sorted(f.kind for f in scan_files(seen, outside, set()))
    assert kinds == ["digest HA1", "digest password"]
