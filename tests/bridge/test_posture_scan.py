"""TLS posture of the running bridge, judged by testssl.sh, ``openssl s_client`` and our own
``pstn-bridge posture``, on the same endpoints.

The bridge runs as ``pstn-bridge serve`` in a subprocess with
``OPENSSL_CONF=config/openssl-groups.cnf`` (the way the Dockerfile runs it: OpenSSL's own
``Groups`` setting is the only way to give Python's ``ssl`` a group list). A deliberately
weak endpoint (``openssl s_server`` at ``@SECLEVEL=0`` with every suite and TLS 1.0-1.3, an
RSA certificate) is the control: every check that passes on the bridge must fail there.

testssl.sh is slow (about 35-40 s per endpoint here), so it runs ONCE per endpoint, all
three at the same time, in a module-scoped fixture (``-p -s -f -S -H -BB -C -R``, plus
``-B -h`` for HTTPS; ``-p -s -f`` for the control). Its exit code is a sum of findings, so
only tool errors (>= 240) are checked; the verdicts come from its JSON. ``--add-ca`` makes it
trust the test CA, so the chain is judged like a deployed one.

Expected testssl findings for a development certificate (anything else fails the test):
``cert_revocation`` HIGH (no CRL or OCSP URI in the certificate) and ``DNS_CAArecord`` LOW (no
CAA record for 127.0.0.1). Tool diagnostics that say nothing about the server are ignored:
``engine_problem`` (no GOST engine locally), ``service`` (SIP is not HTTP, HTTP checks
skipped) and a ``check failed`` WARN of ``sessionresumption_ticket`` (testssl could not
reconnect in time; TLS 1.2 tickets are off on purpose).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sip_gateway.tls import server_context
from tests.interop.peers import free_port
from tests.pki import Pki

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
GROUPS_CONF = ROOT / "config" / "openssl-groups.cnf"
TESTSSL = "testssl"
EXPECTED_FINDINGS = {"cert_revocation": "HIGH", "DNS_CAArecord": "LOW"}
TOOL_DIAGNOSTICS = {"engine_problem", "service"}
STARTUP_S = 30.0


@dataclass(frozen=True)
class Endpoints:
    sip: int
    https: int
    weak: int


@dataclass(frozen=True)
class Scan:
    exit_code: int
    findings: dict[str, dict[str, Any]]
    seconds: float

    def severity(self, finding_id: str) -> str:
        return str(self.findings[finding_id]["severity"])

    def text(self, finding_id: str) -> str:
        return str(self.findings[finding_id]["finding"])


@pytest.fixture(scope="module")
def endpoints(tls_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    work = tmp_path_factory.mktemp("posture")
    sip, https, weak = free_port(), free_port(), free_port()
    config = work / "bridge.toml"
    config.write_text(
        f"""
[node]
id = "posture"
var_dir = "{work / "var"}"
[tls]
cert_file = "{tls_pki.crt("server")}"
key_file = "{tls_pki.key("server")}"
ca_file = "{tls_pki.ca}"
[sip]
listen_port = {sip}
[http]
listen_port = {https}
[users]
demo_user = ""
[carrier_sim]
enabled = false
"""
    )
    log_path = work / "serve.log"
    env = os.environ | {"OPENSSL_CONF": str(GROUPS_CONF)}
    with log_path.open("wb") as log:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "bridge.ops.cli", "serve", "--config", str(config)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        weak_server = subprocess.Popen(
            [
                *("openssl", "s_server", "-accept", f"127.0.0.1:{weak}", "-www", "-quiet"),
                *("-cert", str(tls_pki.crt("rsa-server")), "-key", str(tls_pki.key("rsa-server"))),
                *("-cipher", "ALL:@SECLEVEL=0"),
            ],
            env=os.environ | {"OPENSSL_CONF": os.devnull},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + STARTUP_S
        while b"listening:" not in log_path.read_bytes():
            assert bridge.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "bridge did not start: " + log_path.read_text()
            time.sleep(0.1)
        yield Endpoints(sip=sip, https=https, weak=weak)
    finally:
        for proc in (bridge, weak_server):
            proc.terminate()
        for proc in (bridge, weak_server):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="module")
def testssl(
    endpoints: Endpoints, tls_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Scan]:
    """One testssl.sh run per endpoint, the three in parallel."""
    out = tmp_path_factory.mktemp("testssl")
    common = ["--quiet", "--warnings", "off", "--ip", "one", "--color", "0"]
    # protocols, standard cipher lists, forward secrecy, server defaults (certificate),
    # Heartbleed, ROBOT, CRIME, renegotiation, Lucky13; for HTTPS also BREACH and headers
    tls = ["-p", "-s", "-f", "-S", "-H", "-BB", "-C", "-R", "-L", "--add-ca", str(tls_pki.ca)]
    checks = {
        "sip": (endpoints.sip, tls),
        "https": (endpoints.https, [*tls, "-B", "-h"]),
        "weak": (endpoints.weak, ["-p", "-s", "-f"]),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSSL_")}
    started = time.monotonic()
    procs = {
        name: subprocess.Popen(
            [TESTSSL, *common, *args, "--jsonfile", str(out / f"{name}.json"), f"127.0.0.1:{port}"],
            cwd=out,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, (port, args) in checks.items()
    }
    scans = {}
    for name, proc in procs.items():
        try:
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            pytest.fail(f"testssl.sh on {name} took more than 180 s")
        entries = json.loads((out / f"{name}.json").read_text())
        findings = {entry["id"]: entry for entry in entries}
        scans[name] = Scan(code, findings, time.monotonic() - started)
    return scans


def posture(port: int, pki: Pki, *extra: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "bridge.ops.cli", "posture", f"127.0.0.1:{port}", "--json",
         "--ca", str(pki.ca), *extra],
        capture_output=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"},
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def s_client(port: int, *args: str) -> bool:
    """True when ``openssl s_client`` completed a handshake with these offers."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *args],
        input=b"",
        capture_output=True,
        timeout=10,
        check=False,
        env=os.environ | {"OPENSSL_CONF": os.devnull},
    )
    return done.returncode == 0 and b"Protocol version:" in done.stdout + done.stderr


def failed_codes(report: dict[str, Any]) -> set[str]:
    return {f["code"] for f in report["findings"] if f["severity"] == "fail"}


# ------------------------------------------------------------------ testssl.sh on the bridge


@pytest.mark.parametrize("listener", ["sip", "https"])
def test_testssl_no_protocol_below_tls12(testssl: dict[str, Scan], listener: str) -> None:
    scan = testssl[listener]
    assert scan.exit_code < 240, f"testssl.sh error {scan.exit_code}"
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert scan.text(old).startswith("not offered"), (old, scan.findings[old])
    assert scan.text("TLS1_2") == "offered"
    assert scan.text("TLS1_3").startswith("offered")


@pytest.mark.parametrize("listener", ["sip", "https"])
def test_testssl_no_cbc_or_non_forward_secret_suite(
    testssl: dict[str, Scan], listener: str
) -> None:
    scan = testssl[listener]
    for weak in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
        assert scan.text(f"cipherlist_{weak}") == "not offered", weak
    assert scan.text("PFS") == "offered"
    assert scan.text("PFS_ECDHE_curves").split() == [
        "prime256v1",
        "secp384r1",
        "secp521r1",
        "X25519",
    ]
    assert scan.severity("LUCKY13") == "OK"  # no CBC suite at all
    assert "no RSA key transport" in scan.text("ROBOT")


@pytest.mark.parametrize("listener", ["sip", "https"])
def test_testssl_no_known_vulnerability(testssl: dict[str, Scan], listener: str) -> None:
    scan = testssl[listener]
    checks = ["heartbleed", "ROBOT", "CRIME_TLS", "secure_renego", "secure_client_renego"]
    if listener == "https":
        checks += ["BREACH", "HSTS_time", "HSTS_subdomains"]
    for check in checks:
        assert scan.severity(check) == "OK", (check, scan.findings[check])
    assert scan.text("secure_renego") == "supported"


@pytest.mark.parametrize("listener", ["sip", "https"])
def test_testssl_finds_only_what_a_development_certificate_explains(
    testssl: dict[str, Scan], listener: str
) -> None:
    scan = testssl[listener]
    unexpected = {
        fid: (f["severity"], f["finding"])
        for fid, f in scan.findings.items()
        if f["severity"] not in ("OK", "INFO")
        and fid not in TOOL_DIAGNOSTICS
        and not (fid == "sessionresumption_ticket" and "check failed" in f["finding"])
    }
    assert {fid: sev for fid, (sev, _) in unexpected.items()} == EXPECTED_FINDINGS, unexpected


def test_testssl_sees_the_weak_control_below_policy(testssl: dict[str, Scan]) -> None:
    scan = testssl["weak"]
    assert scan.text("TLS1").startswith("offered")
    assert scan.text("TLS1_1").startswith("offered")
    assert scan.text("cipherlist_AVERAGE").startswith("offered")  # CBC suites
    assert scan.text("cipherlist_aNULL").startswith("offered")


def test_testssl_run_time(testssl: dict[str, Scan]) -> None:
    slowest = max(scan.seconds for scan in testssl.values())
    print(f"testssl.sh, three endpoints in parallel: {slowest:.1f} s")
    assert slowest < 170


# ------------------------------------------------------------------ openssl s_client refusals


@pytest.mark.parametrize(
    "offer",
    [
        ["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"],
        ["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"],
        ["-tls1_2", "-cipher", "AES256-GCM-SHA384"],  # RSA key exchange only
        ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA"],  # ECDHE, CBC
    ],
    ids=["tls1_1", "cbc-rsa-kex", "rsa-kex-gcm", "ecdhe-cbc"],
)
def test_weak_offers_refused_by_the_bridge(endpoints: Endpoints, offer: list[str]) -> None:
    assert s_client(endpoints.weak, *offer), "control: the weak endpoint accepts this offer"
    assert not s_client(endpoints.sip, *offer)
    assert not s_client(endpoints.https, *offer)


def test_strong_offer_accepted_by_the_bridge(endpoints: Endpoints) -> None:
    for port in (endpoints.sip, endpoints.https):
        assert s_client(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
        assert s_client(port, "-tls1_3")


# ------------------------------------------------------------------ pstn-bridge posture


@pytest.mark.parametrize("listener", ["sip", "https"])
def test_posture_agrees_with_testssl_on_the_bridge(
    endpoints: Endpoints, testssl: dict[str, Scan], tls_pki: Pki, listener: str
) -> None:
    code, report = posture(getattr(endpoints, listener), tls_pki)
    assert code == 0, report["findings"]
    assert not report["below_policy"]
    scan = testssl[listener]
    offered = {p for p, key in (("TLSv1.2", "TLS1_2"), ("TLSv1.3", "TLS1_3"))
               if scan.text(key).startswith("offered")}  # fmt: skip
    assert {p for p, ok in report["protocols"].items() if ok} == offered
    accepted_groups = {g for g, ok in report["groups"].items() if ok}
    assert accepted_groups == {"X25519", "P-256", "P-384", "P-521"}
    assert report["forward_secrecy"] is True and scan.text("PFS") == "offered"
    assert report["ocsp_stapling"] == "not offered" == scan.text("OCSP_stapling")
    assert report["secure_renegotiation"] is True
    assert report["certificate"]["key"] == "ECDSA 256"
    assert report["certificate"]["chain_verified"] and report["certificate"]["hostname_match"]
    if listener == "https":
        assert report["https"] and "includeSubDomains" in report["hsts"]
    else:
        assert not report["https"] and report["hsts"] is None


def test_posture_agrees_with_testssl_on_the_weak_endpoint(
    endpoints: Endpoints, testssl: dict[str, Scan], tls_pki: Pki
) -> None:
    code, report = posture(endpoints.weak, tls_pki)
    assert code == 1 and report["below_policy"]
    fails = failed_codes(report)
    assert {"protocol-below-tls12", "suite-ecdhe-cbc", "suite-rsa-kex", "suite-dhe"} <= fails
    assert report["forward_secrecy"] is False
    assert report["protocols"]["TLSv1"] and report["protocols"]["TLSv1.1"]
    scan = testssl["weak"]
    assert scan.text("TLS1_1").startswith("offered") and scan.text("cipherlist_AVERAGE").startswith(
        "offered"
    )


def test_posture_without_the_groups_config_sees_extra_groups(tls_pki: Pki) -> None:
    """This pytest process has no OPENSSL_CONF: a tls.py context offers OpenSSL's default groups."""
    from tests.test_tls import TlsServer

    with TlsServer(server_context(tls_pki.server_config())) as server:
        code, report = posture(server.port, tls_pki, "--service", "tls")
    extra = {g for g, ok in report["groups"].items() if ok} - {"X25519", "P-256", "P-384", "P-521"}
    assert extra >= {"ffdhe2048", "X448"}, report["groups"]
    assert code == 1 and failed_codes(report) == {"group-outside-list"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 200), ("GET", "/healthz", 200), ("GET", "/no-such-page", 404),
     ("POST", "/", 405), ("GET", "/api/calls", 401), ("GET", "/sip", 400)],
)  # fmt: skip
def test_hsts_on_every_https_response(
    endpoints: Endpoints, tls_pki: Pki, method: str, path: str, status: int
) -> None:
    import urllib.error
    import urllib.request

    from sip_gateway.tls import TlsClientConfig, client_context

    ctx = client_context(TlsClientConfig(ca_file=tls_pki.ca))
    request = urllib.request.Request(f"https://127.0.0.1:{endpoints.https}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, context=ctx) as response:
            got, headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        got, headers = error.code, error.headers
    assert got == status
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_posture_text_report_and_exit_codes(endpoints: Endpoints, tls_pki: Pki) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge.ops.cli", "posture", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    shown = run(f"127.0.0.1:{endpoints.sip}", "--ca", str(tls_pki.ca))
    assert shown.returncode == 0, shown.stdout
    assert "OCSP stapling: not offered" in shown.stdout
    assert "verdict: meets the policy" in shown.stdout
    weak = run(f"127.0.0.1:{endpoints.weak}", "--ca", str(tls_pki.ca))
    assert weak.returncode == 1 and "verdict: BELOW POLICY" in weak.stdout
    assert "fail: TLSv1.1 accepted [protocol-below-tls12]" in weak.stdout
    assert run("no-port-here").returncode == 2
    closed = run(f"127.0.0.1:{free_port()}", "--timeout", "3")
    assert closed.returncode == 3 and "no TLS handshake" in closed.stderr
