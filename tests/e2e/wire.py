"""What a loopback capture says about a call: TLS and DTLS handshakes, SRTP packets.

Theory of operation: the truthfulness test (``test_record_truth``) compares the bridge's
security record with facts that nobody in the call reported, read off the wire by
:class:`tests.interop.media_proof.LoopbackCapture` (``tcp=True``). The parts of a handshake
that travel in clear text are enough:

* TLS (WSS and the trunk's SIP over TLS): the ServerHello is never encrypted, in TLS 1.2 or
  1.3. Its cipher suite and (TLS 1.3) ``supported_versions`` extension are the negotiated
  version and suite. :func:`tls_server_hellos` rebuilds the server-to-client byte stream of
  each TCP connection whose SYN was captured and parses the first ServerHello that is not a
  HelloRetryRequest.
* DTLS 1.2 (the WebRTC leg): the whole handshake before ChangeCipherSpec is epoch 0, clear
  text: ClientHello (who is the DTLS client), ServerHello (version, cipher suite, the
  ``use_srtp`` profile chosen) and both Certificate messages (whose SHA-256 is what the
  ``a=fingerprint`` lines promise). :func:`dtls_handshake` reassembles the handshake
  messages (fragments, retransmitted flights) of one UDP 5-tuple.
* SRTP: :func:`srtp_packets` parses RTP headers with CSRCs and header extensions (Chromium
  sends extensions), so the encrypted payload plus the authentication tag can be measured
  against the suite's tag length.

Names: wire code points are mapped to OpenSSL's names (what the bridge's record uses) and to
the IANA names (what Chromium's getStats uses); an unknown code point fails the test.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from tests.interop.media_proof import Datagram, Segment, entropy

__all__ = [
    "CIPHERS",
    "SRTP_PROFILES",
    "DtlsHandshake",
    "SrtpPackets",
    "TlsHello",
    "dtls_handshake",
    "srtp_packets",
    "tls_server_hellos",
]

CIPHERS: dict[int, tuple[str, str]] = {
    # code point: (OpenSSL name, IANA name)
    0x1301: ("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    0x1302: ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    0x1303: ("TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256"),
    0xC02B: ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    0xC02C: ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    0xCCA9: ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    0xC02F: ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    0xC030: ("ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    0xCCA8: ("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    0xC009: ("ECDHE-ECDSA-AES128-SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    0xC00A: ("ECDHE-ECDSA-AES256-SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
}
"""TLS/DTLS cipher suites that can appear here (RFC 8446, RFC 5289, RFC 7905)."""

SRTP_PROFILES: dict[int, tuple[str, int]] = {
    # use_srtp code point (RFC 5764, RFC 7714): (RFC name, SRTP auth tag bytes)
    0x0001: ("SRTP_AES128_CM_HMAC_SHA1_80", 10),
    0x0002: ("SRTP_AES128_CM_HMAC_SHA1_32", 4),
    0x0007: ("SRTP_AEAD_AES_128_GCM", 16),
    0x0008: ("SRTP_AEAD_AES_256_GCM", 16),
}

_VERSIONS = {0x0303: "TLSv1.2", 0x0304: "TLSv1.3", 0xFEFD: "DTLSv1.2", 0xFEFC: "DTLSv1.3"}
_HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
_HANDSHAKE = 22
_CLIENT_HELLO, _SERVER_HELLO, _CERTIFICATE = 1, 2, 11
_EXT_SUPPORTED_VERSIONS, _EXT_USE_SRTP = 43, 14


def _cipher(code: int) -> tuple[str, str]:
    assert code in CIPHERS, f"cipher suite 0x{code:04X} is not in the table"
    return CIPHERS[code]


def _extensions(data: bytes) -> dict[int, bytes]:
    """``type -> data`` of a hello's extensions block (starting at its 2-byte length)."""
    if len(data) < 2:
        return {}
    end = 2 + struct.unpack("!H", data[:2])[0]
    found, pos = {}, 2
    while pos + 4 <= end:
        kind, size = struct.unpack("!HH", data[pos : pos + 4])
        found[kind] = data[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return found


# -- TLS over TCP -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsHello:
    """One connection's ServerHello: who served it and what it chose."""

    server: tuple[str, int]
    client: tuple[str, int]
    version: str
    cipher: str
    """OpenSSL's name of the suite."""


def _streams(segments: Iterable[Segment]) -> dict[tuple[tuple[str, int], tuple[str, int]], bytes]:
    """Each direction's bytes from its SYN on, in sequence order (gaps end a stream)."""
    by_flow: dict[tuple[tuple[str, int], tuple[str, int]], list[Segment]] = collections.defaultdict(
        list
    )
    for segment in segments:
        by_flow[(segment.src, segment.dst)].append(segment)
    streams = {}
    for flow, parts in by_flow.items():
        syns = [s for s in parts if s.syn]
        if not syns:
            continue  # opened before the capture: no known start
        expected = (syns[-1].seq + 1) % (1 << 32)
        data = bytearray()
        for segment in sorted((s for s in parts if s.payload), key=lambda s: s.seq):
            if segment.seq == expected:
                data += segment.payload
                expected = (expected + len(segment.payload)) % (1 << 32)
            elif segment.seq > expected:
                break
        streams[flow] = bytes(data)
    return streams


def _server_hello(stream: bytes) -> tuple[str, str] | None:
    """(version, OpenSSL cipher) of the first real ServerHello in a server's stream."""
    pos = 0
    while pos + 5 <= len(stream):
        kind, _legacy, size = struct.unpack("!BHH", stream[pos : pos + 5])
        record = stream[pos + 5 : pos + 5 + size]
        pos += 5 + size
        if kind != _HANDSHAKE or len(record) < 4 or record[0] != _SERVER_HELLO:
            continue
        body = record[4:]
        legacy, random = struct.unpack("!H", body[:2])[0], body[2:34]
        sid = body[34]
        at = 35 + sid
        code = struct.unpack("!H", body[at : at + 2])[0]
        extensions = _extensions(body[at + 3 :])
        if random == _HRR_RANDOM:
            continue
        chosen = extensions.get(_EXT_SUPPORTED_VERSIONS)
        version = struct.unpack("!H", chosen)[0] if chosen else legacy
        return _VERSIONS.get(version, f"0x{version:04X}"), _cipher(code)[0]
    return None


def tls_server_hellos(segments: Iterable[Segment], server_port: int) -> list[TlsHello]:
    """The ServerHello of every captured connection served from ``server_port``."""
    hellos = []
    for (src, dst), stream in _streams(segments).items():
        if src[1] != server_port:
            continue
        found = _server_hello(stream)
        if found is not None:
            hellos.append(TlsHello(server=src, client=dst, version=found[0], cipher=found[1]))
    return hellos


# -- DTLS over UDP ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtlsHandshake:
    """The clear-text facts of one DTLS 1.2 handshake between two UDP ports."""

    client_port: int
    """The port that sent the ClientHello."""
    version: str
    cipher: tuple[str, str]
    """(OpenSSL name, IANA name)."""
    srtp_profile: str
    srtp_tag: int
    certificates: dict[int, bytes]
    """Sender port -> the DER of the first certificate it sent."""

    def fingerprint(self, port: int) -> str:
        """``sha-256 AB:CD:...`` of the certificate sent from ``port``."""
        digest = hashlib.sha256(self.certificates[port]).hexdigest().upper()
        return "sha-256 " + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _dtls_messages(datagrams: Iterable[Datagram]) -> dict[tuple[int, int], tuple[int, bytes]]:
    """(sender port, message_seq) -> (type, reassembled body) of epoch-0 handshake messages."""
    parts: dict[tuple[int, int], tuple[int, int, dict[int, bytes]]] = {}
    for datagram in datagrams:
        data = datagram.payload
        if not data or not 20 <= data[0] <= 63:
            continue  # STUN, RTP, RTCP share the 5-tuple (RFC 7983)
        pos = 0
        while pos + 13 <= len(data):
            kind, _version, epoch = struct.unpack("!BHH", data[pos : pos + 5])
            size = struct.unpack("!H", data[pos + 11 : pos + 13])[0]
            fragment = data[pos + 13 : pos + 13 + size]
            pos += 13 + size
            if kind != _HANDSHAKE or epoch != 0 or len(fragment) < 12:
                continue
            msg_type = fragment[0]
            length = int.from_bytes(fragment[1:4], "big")
            seq = struct.unpack("!H", fragment[4:6])[0]
            offset = int.from_bytes(fragment[6:9], "big")
            chunk = fragment[12 : 12 + int.from_bytes(fragment[9:12], "big")]
            key = (datagram.src[1], seq)
            parts.setdefault(key, (msg_type, length, {}))[2][offset] = chunk
    messages = {}
    for key, (msg_type, length, chunks) in parts.items():
        body = bytearray(length)
        covered = 0
        for offset, chunk in sorted(chunks.items()):
            body[offset : offset + len(chunk)] = chunk
            covered = max(covered, offset + len(chunk))
        if covered >= length:
            messages[key] = (msg_type, bytes(body))
    return messages


def dtls_handshake(datagrams: Iterable[Datagram], a: int, b: int) -> DtlsHandshake:
    """The DTLS handshake between UDP ports ``a`` and ``b`` (either direction).

    Raises:
        AssertionError: no complete ClientHello, ServerHello or Certificate pair on the wire.
    """
    between = [d for d in datagrams if {d.src[1], d.dst[1]} == {a, b}]
    messages = _dtls_messages(between)
    clients = {port for (port, _seq), (kind, _body) in messages.items() if kind == _CLIENT_HELLO}
    hellos = [body for (_port, _seq), (kind, body) in messages.items() if kind == _SERVER_HELLO]
    assert len(clients) == 1 and hellos, f"no DTLS hellos between {a} and {b}"
    body = hellos[0]
    version = struct.unpack("!H", body[:2])[0]
    sid = body[34]
    at = 35 + sid
    code = struct.unpack("!H", body[at : at + 2])[0]
    use_srtp = _extensions(body[at + 3 :]).get(_EXT_USE_SRTP, b"")
    assert len(use_srtp) >= 4, "the ServerHello has no use_srtp extension"
    profile = struct.unpack("!H", use_srtp[2:4])[0]
    assert profile in SRTP_PROFILES, f"SRTP profile 0x{profile:04X} is not in the table"
    certificates = {}
    for (port, _seq), (kind, cert_body) in messages.items():
        if kind == _CERTIFICATE and len(cert_body) > 6:
            first = int.from_bytes(cert_body[3:6], "big")
            certificates[port] = cert_body[6 : 6 + first]
    assert set(certificates) == {a, b}, f"certificates seen from {sorted(certificates)}"
    name, tag = SRTP_PROFILES[profile]
    return DtlsHandshake(
        client_port=clients.pop(),
        version=_VERSIONS.get(version, f"0x{version:04X}"),
        cipher=_cipher(code),
        srtp_profile=name,
        srtp_tag=tag,
        certificates=certificates,
    )


# -- SRTP ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SrtpPackets:
    """The RTP packets of one SSRC and payload type, split into header and the rest."""

    ssrc: int
    payload_type: int
    headers: list[bytes]
    bodies: list[bytes]
    """Encrypted payload plus authentication tag (and MKI: none here)."""

    @property
    def sequence_steps(self) -> collections.Counter[int]:
        """How the sequence number moved between consecutive packets (1 = in order)."""
        seqs = [struct.unpack("!H", h[2:4])[0] for h in self.headers]
        return collections.Counter((b - a) % 65536 for a, b in itertools.pairwise(seqs))

    @property
    def body_sizes(self) -> collections.Counter[int]:
        return collections.Counter(len(b) for b in self.bodies)

    @property
    def entropy(self) -> float:
        """Bits per byte of the bodies taken together (8 = random)."""
        return entropy(b"".join(self.bodies))


def srtp_packets(datagrams: Iterable[Datagram], src: int, dst: int) -> list[SrtpPackets]:
    """RTP (not RTCP) datagrams from port ``src`` to ``dst``, by (SSRC, payload type),
    largest group first; the RTP header's length includes CSRCs and the extension block."""
    groups: dict[tuple[int, int], SrtpPackets] = {}
    for datagram in datagrams:
        data = datagram.payload
        if datagram.src[1] != src or datagram.dst[1] != dst:
            continue
        if len(data) < 12 or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
            continue
        size = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= size + 4:
            size += 4 + 4 * struct.unpack("!H", data[size + 2 : size + 4])[0]
        ssrc, pt = struct.unpack("!I", data[8:12])[0], data[1] & 0x7F
        group = groups.setdefault((ssrc, pt), SrtpPackets(ssrc, pt, [], []))
        group.headers.append(data[:size])
        group.bodies.append(data[size:])
    return sorted(groups.values(), key=lambda g: -len(g.bodies))
