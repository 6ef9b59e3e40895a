"""Fixtures shared by every test suite.

``tls_pki`` (session scope): a throwaway PKI from ``tests/pki.py``; see that module for the
certificate names. Suites that need their own copy use ``from tests.pki import make_pki``.

``postgres_server`` (session scope): a real PostgreSQL cluster on loopback from
``tests/postgres.py`` (``await postgres_server.new_database()`` gives a test its own URL).

``leak_scan`` (session scope, automatic): the suite-wide secret scan of ``tests/leakscan.py``;
the session fails if any SDES key, digest password, HA1, digest response, private key,
nonce secret or ops token used in the run is found in the logs, the call updates (what the
store, MQTT and the ops API are fed), HTTP responses read by tests, or any file the run
wrote under pytest's temporary directory.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.leakscan import CaptureLog, Secrets, dump_json_lines, register_files, scan_files, wrap
from tests.pki import tls_pki
from tests.postgres import postgres_server

__all__ = ["leak_scan", "postgres_server", "tls_pki"]

_RESULT: list[str] = []
_DIGEST_MODULES = (
    "sip_gateway.sip.digest",
    "sip_gateway.sip.auth",
    "sip_gateway.sip.auth_client",
    "sip_gateway.sip.auth_server",
    "bridge.users",
)


@pytest.fixture(scope="session", autouse=True)
def leak_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secrets]:
    from bridge.call.journal import Journal
    from sip_gateway.sdp.crypto import KeyParams

    root = tmp_path_factory.getbasetemp()
    out = root / "leakscan"
    out.mkdir(exist_ok=True)
    secrets = Secrets()
    calls_with_sdes = 0
    handler = CaptureLog(out / "log.txt")
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.setLevel(logging.INFO)
    root_logger.addHandler(handler)
    with pytest.MonkeyPatch.context() as patch:
        post_init = KeyParams.__post_init__

        def key_seen(self: KeyParams) -> None:
            post_init(self)
            secrets.add_bytes("SDES master key", self.key_salt)

        patch.setattr(KeyParams, "__post_init__", key_seen)

        def ha1_seen(result: str, _user: str, _realm: str, password: str, *_: Any) -> None:
            secrets.add_text("digest password", password)
            secrets.add_text("digest HA1", result)

        def response_seen(result: str, *_: Any, **__: Any) -> None:
            secrets.add_text("digest response", result)

        for name in _DIGEST_MODULES:
            module = importlib.import_module(name)
            for function, tap in (("compute_ha1", ha1_seen), ("compute_response", response_seen)):
                if hasattr(module, function):
                    patch.setattr(module, function, wrap(getattr(module, function), tap))

        report = Journal.report

        def report_seen(self: Journal, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls_with_sdes
            update = report(self, *args, **kwargs)
            if update.final and any(
                (leg.get("media") or {}).get("crypto_suite") for leg in update.record["legs"]
            ):
                calls_with_sdes += 1
            dump_json_lines(out / "call-updates.jsonl", [update.as_dict(), dict(update.record)])
            return update

        patch.setattr(Journal, "report", report_seen)
        read = aiohttp.ClientResponse.read

        async def read_seen(self: aiohttp.ClientResponse) -> bytes:
            body = await read(self)
            with (out / "http-responses.bin").open("ab") as sink:
                sink.write(body + b"\n")
            return body

        patch.setattr(aiohttp.ClientResponse, "read", read_seen)
        try:
            yield secrets
        finally:
            root_logger.removeHandler(handler)
            root_logger.setLevel(old_level)
            handler.close()
    homes = register_files(secrets, root)
    findings = scan_files(secrets, root, homes)
    counts = secrets.count()
    _RESULT.append(
        f"leak scan: {sum(counts.values())} secret forms {counts} "
        f"({secrets.too_short} too short to search) in {root}: "
        + ("clean" if not findings else f"{len(findings)} FOUND")
    )
    if findings:
        pytest.fail("secrets leaked: " + "; ".join(str(f) for f in findings[:20]), pytrace=False)
    if calls_with_sdes and "SDES master key" not in counts:
        pytest.fail("leak scan: calls used SDES but no key was tapped", pytrace=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _RESULT:
        terminalreporter.write_line(line)
