"""The security record tells the truth: every field against a witness outside the bridge.

One call: the dialer page in Chromium -> the bridge -> baresip (mandatory SDES-SRTP, the only
trunk, ``tests.interop`` fixture), with the page preferring PCMU so the bridge relays G.711
codes unchanged both ways (the plaintext that must not be on the wire is then known exactly,
which it is not for Opus). A :class:`~tests.call_records.RecordingSink` on the bridge's journal
keeps the final (frozen) record; a raw ``AF_PACKET`` capture on ``lo`` runs from before the
bridge starts until after the call. The witnesses:

* Chromium's ``getStats()`` (read straight from the page's RTCPeerConnection, not through the
  page's own summary): the transport's ``dtlsCipher``, ``srtpCipher``, ``tlsVersion``,
  ``dtlsRole``, ``selectedCandidatePairId`` and its local certificate (``certificate`` stats:
  fingerprint and DER), the codec; and the page's SDP (its ``a=fingerprint``), its call
  (Call-ID, direction, times) and its WebSocket URL.
* The wire (:mod:`tests.e2e.wire`): the clear-text TLS ServerHello of every connection to the
  bridge's HTTPS/WSS port and to baresip's SIP-TLS port (negotiated version and suite); the
  clear-text DTLS 1.2 handshake on the selected ICE pair (ClientHello sender = DTLS client,
  ServerHello version, suite and ``use_srtp`` profile, both certificates); the SRTP packets
  of both legs (RTP header intact, payload = 160 B of G.711 + the suite's tag, ~8 bit/B, no
  16-byte window of the G.711 either side sent).
  Chromium does not expose the TLS facts of its WebSocket, and an ``openssl s_client`` run
  would only show what a lookalike client negotiates; the ServerHellos on the wire are the
  sessions themselves (every connection Chromium opened to the port must agree, the WSS being
  one of them). The same holds for the trunk: baresip does not log its TLS version or suite.
* baresip: its SIP trace (the INVITE it received and over which TLS connection, its SDP answer
  with the chosen ``a=crypto`` suite; keys are never read out), its log line
  ``SRTP is Enabled (cryptosuite=...)``, its recording of what it decrypted.
* The certificate baresip serves: ``openssl s_client`` against its TLS port shows the chain
  verifies against the test CA for IP 127.0.0.1 and returns the certificate, which must be the
  file baresip was given (parsed with ``cryptography`` for the subject).
* The call-level fields: the page's call (its Call-ID begins the record's ``call_id``;
  direction; start, answer and end times; it hung up an answered call, so the end reason is
  ``caller-hangup`` and there is no failure ``sip_status``), baresip's trace (the dialled
  number, the trunk's address, no 488) and the journal (no ``refused`` update).

Fields not independently observable (:data:`JUSTIFIED`, checked for completeness against the
record's keys, so a new field fails this test until someone says how it is witnessed):

* ``legs.gateway.signaling.mutual_tls`` is null: the bridge is the TLS client and Python's
  ``ssl`` cannot tell a client whether its certificate was sent; in TLS 1.3 the server's
  CertificateRequest is encrypted, so the wire cannot tell either (baresip never asks).
* ``legs.gateway.media.keys_fresh``: freshness is a property across calls (keys never reused);
  one call cannot show it, and reading the keys out of baresip's trace to compare them with
  anything would put key material into test output.
* ``legs.pstn.*``, ``caveats``, ``end_to_end_encrypted``: they describe the telephone network
  beyond the gateway, which nothing on loopback can observe; they are the design's constants
  for every PSTN call (asserted as such).
"""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from playwright.async_api import BrowserContext, Page

from bridge.security import PSTN_CAVEAT, PSTN_CAVEAT_TEXT
from sip_gateway.media.g711 import G711Codec
from tests.call_records import RecordingSink, legs_of
from tests.interop.conftest import baresip, peer_stack, pki  # noqa: F401 - fixtures used here
from tests.interop.media_proof import (
    LoopbackCapture,
    assert_srtp_on_wire,
    plaintext_windows,
    read_wav,
)
from tests.interop.peer_baresip import Baresip
from tests.interop.peers import wait_log
from tests.pki import Pki

from .browser import dial, hang_up, open_and_register, wait_call_state
from .calls import (
    DTLS_VERSIONS,
    bridge_to_baresip,
    sample_inbound_audio,
    srtp_profile,
    wait_bridge_idle,
)
from .conftest import USERS, BridgeFactory
from .wire import dtls_handshake, srtp_packets, tls_server_hellos

pytestmark = pytest.mark.interop

NUMBER = "+15551230001"
USER = "alice"
SPEAK_S = 3.0
G711_FRAME = 160

JUSTIFIED = {
    "legs.gateway.signaling.mutual_tls": "a TLS client cannot observe it (module docstring)",
    "legs.gateway.media.keys_fresh": "a property across calls, not of one call",
    "legs.pstn.encrypted": "beyond the gateway: not observable",
    "legs.pstn.status": "beyond the gateway: not observable",
    "legs.pstn.caveat": "beyond the gateway: not observable",
    "caveats": "beyond the gateway: not observable",
    "end_to_end_encrypted": "beyond the gateway: not observable",
}

TRACK_PEER_CONNECTIONS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__truthPeerConnections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__truthPeerConnections.push(this); }
  };
})();"""
"""Runs before the page's scripts: keeps every RTCPeerConnection the page makes."""

RAW_STATS = """async () => {
  const pcs = window.__truthPeerConnections;
  const pc = pcs[pcs.length - 1];
  const stats = [];
  (await pc.getStats()).forEach((r) => stats.push(r));
  return {stats, localSdp: pc.localDescription.sdp, count: pcs.length};
}"""


class Witness:
    """Compares record fields (dotted paths, legs by name) with observations; keeps score."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.checked: set[str] = set()

    def value(self, path: str) -> Any:
        parts = path.split(".")
        node: Any = self.record
        if parts[0] == "legs":
            node, parts = legs_of(self.record)[parts[1]], parts[2:]
        for part in parts:
            node = node[part]
        return node

    def same(self, path: str, *observed: Any, as_: Callable[[Any], Any] = lambda v: v) -> None:
        """The field equals every observation (after ``as_``)."""
        value = self.value(path)
        assert observed, path
        for seen in observed:
            assert as_(value) == as_(seen), f"{path}: record {value!r}, observed {seen!r}"
        self.checked.add(path)

    def fields(self) -> set[str]:
        """Every leaf path of the record (legs by name; lists are leaves)."""
        found = set()
        for key in self.record:
            if key != "legs":
                found.add(key)
                continue
            for name, leg in legs_of(self.record).items():
                for field, inner in leg.items():
                    if field == "leg":
                        continue
                    if isinstance(inner, dict):
                        found |= {f"legs.{name}.{field}.{sub}" for sub in inner}
                    else:
                        found.add(f"legs.{name}.{field}")
        return found


def _iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _sip_messages(log: str) -> list[tuple[str, str]]:
    """baresip's SIP trace as (``TLS a -> b`` line, message text) pairs."""
    parts = re.split(r"^(TLS \S+ -> \S+)\s*$", log, flags=re.M)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def _sdp_facts(message: str) -> dict[str, Any]:
    """m=audio port/proto/formats, a=crypto suite names (never keys), fingerprint presence."""
    media = re.search(r"^m=audio (\d+) (\S+) ([\d ]+)\s*$", message, re.M)
    assert media is not None, "no m=audio line"
    return {
        "port": int(media[1]),
        "proto": media[2],
        "formats": media[3].split(),
        "suites": re.findall(r"^a=crypto:\d+ (\S+) ", message, re.M),
        "fingerprint": bool(re.search(r"^a=fingerprint:", message, re.M)),
    }


async def _served_certificate(port: int, ca: Path) -> tuple[str, bytes]:
    """``openssl s_client`` against 127.0.0.1:port: (verification line, leaf DER)."""
    proc = await asyncio.create_subprocess_exec(
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-CAfile",
        str(ca),
        "-verify_ip",
        "127.0.0.1",
        "-verify_return_error",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    async with asyncio.timeout(10):
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    verified = re.search(r"^Verify return code: .*$", text, re.M)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
    assert verified is not None and pem is not None, text[-2000:]
    der = x509.load_pem_x509_certificate(pem[0].encode()).public_bytes(Encoding.DER)
    return verified[0], der


async def _raw_stats(page: Page) -> tuple[dict[str, dict[str, Any]], str]:
    raw = await page.evaluate(RAW_STATS)
    assert raw["count"] == 1, "one RTCPeerConnection expected"
    return {s["id"]: s for s in raw["stats"]}, raw["localSdp"]


@dataclass(frozen=True, slots=True)
class Observed:
    """Everything the witnesses saw of the one call."""

    record: dict[str, Any]
    answered: dict[str, Any]
    """The page's call when answered (code 200)."""
    ended: dict[str, Any]
    """The page's call after the hang-up (times, originator, Call-ID, remote)."""
    stats: dict[str, dict[str, Any]]
    """Chromium's getStats() by id, taken while the call was up."""
    local_sdp: str
    ws_url: str
    capture: LoopbackCapture
    gateway: Baresip
    https_port: int
    refusals: list[str]
    """Reasons of the journal's ``refused`` updates."""

    @property
    def messages(self) -> list[tuple[str, str]]:
        return _sip_messages(self.gateway.log.read_text())

    def invite(self) -> tuple[str, str]:
        """baresip's trace of the INVITE it got: (hop line, message)."""
        return next((h, m) for h, m in self.messages if m.lstrip().startswith("INVITE "))

    def answer(self) -> str:
        (answer,) = [
            m
            for _h, m in self.messages
            if m.lstrip().startswith("SIP/2.0 200") and re.search(r"^CSeq: 1 INVITE", m, re.M)
        ]
        return answer


async def test_every_field_of_the_record_matches_an_independent_observation(
    chromium: BrowserContext,
    bridge_factory: BridgeFactory,
    baresip: Callable[..., Baresip],  # noqa: F811 - the imported fixture
    pki: Pki,  # noqa: F811 - the imported fixture
) -> None:
    with LoopbackCapture(tcp=True) as capture:
        gateway = baresip("gw", NUMBER, tone_hz=440.0, tone_s=30.0)
        bridge = await bridge_to_baresip(bridge_factory, gateway, pki.ca)
        sink = RecordingSink()
        bridge.running.orchestrator.journal.add_sink(sink)
        ctrl = await gateway.ctrl()
        await chromium.add_init_script(TRACK_PEER_CONNECTIONS)
        page = await open_and_register(chromium, bridge.base_url, USER, USERS[USER])
        ws_url = await page.input_value("#ws-url")
        await page.check("#prefer-pcmu")
        await dial(page, NUMBER)
        answered = await wait_call_state(page, "answered", timeout=15)
        await ctrl.wait_event("CALL_ESTABLISHED", timeout=5)
        audio = await sample_inbound_audio(page, SPEAK_S)
        stats, local_sdp = await _raw_stats(page)
        ended = await hang_up(page)
        await ctrl.wait_event("CALL_CLOSED", timeout=5)
        await asyncio.sleep(0.3)  # the last packets; sndfile closes its WAV
        (final,) = await sink.wait_final()
    await wait_bridge_idle(bridge)
    assert audio.grew("packetsReceived") >= 0.7 * 50 * SPEAK_S, audio.stats
    seen = Observed(
        record=dict(final.record),
        answered=answered,
        ended=ended,
        stats=stats,
        local_sdp=local_sdp,
        ws_url=ws_url,
        capture=capture,
        gateway=gateway,
        https_port=bridge.running.https_port,
        refusals=[str(u.detail["reason"]) for u in sink.updates if u.event == "refused"],
    )
    witness = Witness(seen.record)

    _check_the_call(witness, seen)
    browser_port, bridge_port, tag = _check_webrtc_media(witness, seen)
    _check_signaling(witness, seen)
    await _check_gateway_certificate(witness, seen, pki)
    figures = _check_srtp_on_both_legs(witness, seen, browser_port, bridge_port, tag)

    # beyond the gateway: the design's constants (JUSTIFIED)
    record = seen.record
    pstn = legs_of(record)["pstn"]
    assert (pstn["encrypted"], pstn["status"], pstn["caveat"]) == (
        None,
        "carrier-dependent",
        PSTN_CAVEAT_TEXT,
    )
    assert record["caveats"] == [PSTN_CAVEAT] and record["end_to_end_encrypted"] is False
    assert legs_of(record)["gateway"]["signaling"]["mutual_tls"] is None

    # every field was checked or is on the justified list, never both
    assert not witness.checked & set(JUSTIFIED)
    accounted = witness.checked | set(JUSTIFIED)
    assert witness.fields() == accounted, witness.fields() ^ accounted
    print(f"record truth: {figures}")


def _check_the_call(witness: Witness, seen: Observed) -> None:
    """Parties, times, end and refusals: the page's call and baresip's trace."""
    record, call = seen.record, seen.ended
    hop, invite = seen.invite()
    request_uri = re.search(r"^INVITE sip:([^@;>]+)@", invite.lstrip(), re.M)
    assert request_uri is not None
    # c-<UTC creation time>-<the browser's Call-ID, first 12>, created between dial and answer
    made = re.fullmatch(r"c-(\d{14})-([A-Za-z0-9._-]{1,12})-[0-9a-f]{6}", record["call_id"])
    assert made is not None and made[2] == call["callId"][:12], (record["call_id"], call)
    stamp = datetime.strptime(made[1] + "+0000", "%Y%m%d%H%M%S%z").timestamp()
    assert int(_iso(call["startedAt"])) <= stamp <= _iso(call["answeredAt"]), (record, call)
    witness.checked.add("call_id")
    witness.same("direction", call["direction"])
    witness.same("from", USER)  # the page registered and dialled as USER
    witness.same("user", USER)
    witness.same("to", request_uri[1], call["remote"])
    # the trunk whose address got the INVITE (baresip's trace) is the one named "baresip"
    assert hop.endswith(f"-> 127.0.0.1:{seen.gateway.tls_port}"), hop
    witness.same("trunk", "baresip")

    started, answered = _iso(call["startedAt"]), _iso(call["answeredAt"])
    ended = _iso(call["endedAt"])
    assert started <= _iso(record["started_at"]) <= answered, (call, record)
    witness.checked.add("started_at")
    assert abs(_iso(record["answered_at"]) - answered) < 1.0, (call, record)
    witness.checked.add("answered_at")
    assert ended - 0.1 <= _iso(record["ended_at"]) <= ended + 2.0, (call, record)
    witness.checked.add("ended_at")

    # the page hung up (we pressed the button) an answered call; baresip got the BYE
    assert call["originator"] == "local" and seen.answered["code"] == 200
    assert any(m.lstrip().startswith("BYE ") for _h, m in seen.messages)
    witness.same("end_reason", "caller-hangup")
    witness.same("sip_status", None)  # answered (200): no failure status to record
    # nothing refused: no journal refusal, no 488 in baresip's trace
    statuses = [m.split()[1] for _h, m in seen.messages if m.lstrip().startswith("SIP/2.0")]
    assert "488" not in statuses and not seen.refusals
    witness.same("policy_refusals", [])


def _check_webrtc_media(witness: Witness, seen: Observed) -> tuple[int, int, int]:
    """DTLS facts: getStats, the page's SDP and the handshake on the selected pair's 5-tuple.

    Returns:
        (browser's port, bridge's port, SRTP tag length) of the selected ICE pair.
    """
    stats = seen.stats
    (transport,) = [s for s in stats.values() if s["type"] == "transport"]
    pair = stats[transport["selectedCandidatePairId"]]
    browser_port = stats[pair["localCandidateId"]]["port"]
    bridge_port = stats[pair["remoteCandidateId"]]["port"]
    own_cert = stats[transport["localCertificateId"]]
    dtls = dtls_handshake(seen.capture.datagrams, browser_port, bridge_port)
    # the certificate stats carry the DER itself: the wire shows that very certificate
    assert dtls.certificates[browser_port] == base64.b64decode(own_cert["base64Certificate"])

    witness.same("legs.webrtc.media.protocol", "DTLS-SRTP")  # DTLS then SRTP on one 5-tuple
    witness.same(
        "legs.webrtc.media.dtls_version", DTLS_VERSIONS[transport["tlsVersion"]], dtls.version
    )
    openssl, iana = dtls.cipher
    assert transport["dtlsCipher"] == iana, (transport["dtlsCipher"], dtls.cipher)
    witness.same("legs.webrtc.media.dtls_cipher", openssl)
    witness.same(
        "legs.webrtc.media.srtp_profile",
        transport["srtpCipher"],
        dtls.srtp_profile,
        as_=srtp_profile,
    )
    bridge_role = "client" if dtls.client_port == bridge_port else "server"
    assert transport["dtlsRole"] == {"client": "server", "server": "client"}[bridge_role]
    witness.same("legs.webrtc.media.dtls_role", bridge_role)
    witness.same(
        "legs.webrtc.media.remote_fingerprint",
        f"{own_cert['fingerprintAlgorithm']} {own_cert['fingerprint']}",
        dtls.fingerprint(browser_port),
        as_=str.upper,
    )
    # what the browser signalled (its SDP's first a=fingerprint) is what it presented in DTLS
    signalled = re.findall(r"^a=fingerprint:(\S+) (\S+)\s*$", seen.local_sdp, re.M)
    assert signalled and signalled[0][0] == "sha-256", signalled
    matches = f"sha-256 {signalled[0][1]}".upper() == dtls.fingerprint(browser_port).upper()
    witness.same("legs.webrtc.media.fingerprint_matches_signaling", matches)
    codec = stats[next(s["codecId"] for s in stats.values() if s["type"] == "outbound-rtp")]
    witness.same(
        "legs.webrtc.media.codec", f"{codec['mimeType'].split('/')[1]}/{codec['clockRate']}"
    )
    assert codec["payloadType"] == 0  # PCMU: what the SRTP check below expects
    return browser_port, bridge_port, dtls.srtp_tag


def _check_signaling(witness: Witness, seen: Observed) -> None:
    """Both TLS sessions: the ServerHellos on the wire."""
    assert seen.ws_url == f"wss://127.0.0.1:{seen.https_port}/sip", seen.ws_url
    witness.same("legs.webrtc.signaling.transport", seen.ws_url.split(":")[0])
    hellos = {
        (h.version, h.cipher) for h in tls_server_hellos(seen.capture.segments, seen.https_port)
    }
    assert len(hellos) == 1, hellos  # every connection Chromium made agrees, the WSS too
    ((version, cipher),) = hellos
    witness.same("legs.webrtc.signaling.tls_version", version)
    witness.same("legs.webrtc.signaling.cipher", cipher)

    hop, _invite = seen.invite()
    bridge_side = hop.split()[1]  # baresip's trace: the INVITE came over this connection
    trunk_hellos = tls_server_hellos(seen.capture.segments, seen.gateway.tls_port)
    (session,) = [h for h in trunk_hellos if f"{h.client[0]}:{h.client[1]}" == bridge_side]
    witness.same("legs.gateway.signaling.transport", "tls")
    witness.same("legs.gateway.signaling.tls_version", session.version)
    witness.same("legs.gateway.signaling.cipher", session.cipher)
    witness.same("legs.gateway.peer", f"{session.server[0]}:{session.server[1]}")


async def _check_gateway_certificate(witness: Witness, seen: Observed, certs: Pki) -> None:
    """What baresip serves verifies against the trunk's CA for 127.0.0.1; its subject."""
    verify, served = await _served_certificate(seen.gateway.tls_port, certs.ca)
    given = x509.load_pem_x509_certificate(certs.combined("server").read_bytes())
    assert served == given.public_bytes(Encoding.DER), "baresip serves another certificate"
    witness.same("legs.gateway.signaling.peer_certificate_verified", verify.endswith(" 0 (ok)"))
    witness.same("legs.gateway.signaling.peer_certificate_subject", given.subject.rfc4514_string())


def _check_srtp_on_both_legs(
    witness: Witness, seen: Observed, browser_port: int, bridge_port: int, webrtc_tag: int
) -> dict[str, dict[str, object]]:
    """The gateway's SDES facts (baresip's SDP and log), then SRTP on the wire on both legs.

    Returns:
        figures per direction (packets, entropy).
    """
    offer, answer = _sdp_facts(seen.invite()[1]), _sdp_facts(seen.answer())
    (suite,) = answer["suites"]
    assert offer["proto"] == answer["proto"] == "RTP/SAVP"
    assert suite in offer["suites"] and not answer["fingerprint"]
    wait_log(seen.gateway.log, f"SRTP is Enabled (cryptosuite={suite})", timeout=2)
    witness.same("legs.gateway.media.protocol", "SRTP")
    witness.same("legs.gateway.media.keying", "SDES")  # a=crypto in RTP/SAVP, no fingerprint
    witness.same("legs.gateway.media.crypto_suite", suite)

    # the bridge relays G.711 codes: baresip's tone and what baresip decrypted from the
    # browser are the plaintext of both legs, which no datagram may contain
    tone = G711Codec("PCMU").encode(read_wav(seen.gateway.wav))
    (recording,) = seen.gateway.recordings("dec")
    plaintext = [tone, G711Codec("PCMU").encode(read_wav(recording))]
    ours, theirs = offer["port"], answer["port"]
    pt = int(answer["formats"][0])
    datagrams = seen.capture.datagrams
    figures = {}
    for name, src, dst in (("bridge->baresip", ours, theirs), ("baresip->bridge", theirs, ours)):
        figures[name] = assert_srtp_on_wire(
            seen.capture.between(src, dst), ssrc=None, suite=suite, audio_pt=pt, plaintext=plaintext
        )
    witness.same("legs.gateway.media.codec", {0: "PCMU/8000", 8: "PCMA/8000"}[pt])
    witness.same("legs.gateway.encrypted", True)

    windows = plaintext_windows(plaintext)
    for name, src, dst in (
        ("browser->bridge", browser_port, bridge_port),
        ("bridge->browser", bridge_port, browser_port),
    ):
        stream = srtp_packets(datagrams, src, dst)[0]
        assert stream.payload_type == 0, stream.payload_type
        assert len(stream.bodies) >= 0.7 * 50 * SPEAK_S, len(stream.bodies)
        assert stream.body_sizes.most_common(1)[0][0] == G711_FRAME + webrtc_tag
        assert stream.sequence_steps.most_common(1)[0][0] == 1
        assert stream.entropy > 7.5, stream.entropy
        for body in stream.bodies:
            assert not any(body[i : i + 16] in windows for i in range(len(body) - 15)), (
                f"plaintext G.711 on the WebRTC leg ({name})"
            )
        figures[name] = {"packets": len(stream.bodies), "entropy": round(stream.entropy, 2)}
    witness.same("legs.webrtc.encrypted", True)
    return figures
