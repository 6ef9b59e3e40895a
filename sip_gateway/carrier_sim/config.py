"""What the carrier simulator does: one frozen configuration object.

Theory of operation: :class:`CarrierSimConfig` holds every knob of ``pstn-bridge
carrier-sim``: where it listens (SIP over TLS, default ``127.0.0.1:5062``) and with which
certificate, how it treats the calls it receives (:class:`SimMode`: echo, play a WAV, a
tone, busy, no answer; ring time, recording, DTMF, hang-up) and what it trusts when it
connects out. Validation happens at construction (``ValueError`` naming the option); files
are read only when the simulator starts. From it come the trunk configurations the
simulator runs on: one that accepts any source address (it is a simulator: peers are
logged, not screened) and one per target it dials.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sip_gateway.media.dtmf import DTMF_DIGITS
from sip_gateway.sdp import DEFAULT_CRYPTO_SUITES, SUITES
from sip_gateway.tls import TlsServerConfig, server_context
from sip_gateway.trunk import CODECS, TrunkConfig

__all__ = ["ANY_PEER", "CarrierSimConfig", "SimMode"]

ANY_PEER = "any-peer"
"""Name of the inbound trunk that accepts every source address."""
_ANYWHERE = ("0.0.0.0/0", "::/0")


class SimMode(StrEnum):
    """How the simulator treats a call it answers (and the media of calls it places)."""

    ECHO = "echo"
    """Answer and send back what is received."""
    PLAY = "play"
    """Answer and play a WAV file once (8 kHz mono 16-bit), then silence."""
    TONE = "tone"
    """Answer and send announcement-like beeps of one frequency."""
    BUSY = "busy"
    """Refuse with 486 Busy Here."""
    NO_ANSWER = "no-answer"
    """Ring (180) and never answer: 487 on CANCEL, 480 after the no-answer timeout."""

    @property
    def answers(self) -> bool:
        """Whether calls in this mode are answered (and have media)."""
        return self not in (SimMode.BUSY, SimMode.NO_ANSWER)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierSimConfig:
    """The carrier simulator's configuration (see the module docstring).

    Raises:
        ValueError: (at construction) an option is out of range or inconsistent.
    """

    listen_host: str = "127.0.0.1"
    """Address the SIP-TLS listener binds (``0.0.0.0`` or ``::`` for every interface)."""
    listen_port: int = 5062
    """Its TCP port; 0 picks a free one (tests)."""
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    """A ready server TLS context; when None, ``certificate`` and ``private_key`` build one."""
    certificate: Path | None = None
    """PEM certificate chain the listener presents."""
    private_key: Path | None = None
    """PEM private key of ``certificate``."""
    ca_file: Path | None = None
    """CA bundle trusted when the simulator connects out (calls it places, requests to a
    peer's Contact); None uses the system store."""
    mode: SimMode = SimMode.ECHO
    """What happens to calls it receives (a string is converted)."""
    play_file: Path | None = None
    """The WAV played in ``play`` mode: 8 kHz, mono, 16-bit PCM (other formats are refused,
    never converted)."""
    tone_hz: float = 425.0
    """Frequency of the ``tone`` mode, in Hz (425 Hz: the European call-progress tone)."""
    announcement: bool = False
    """``echo`` mode: play a short announcement (``play_file`` if set, else a built-in
    chime) before echoing."""
    tone_on: float = 0.4
    """Seconds each beep lasts."""
    tone_off: float = 0.4
    """Seconds of silence between beeps (0: a continuous tone)."""
    tone_level: float = 0.5
    """Tone amplitude as a fraction of full scale (0 < level <= 1)."""
    ring_time: float = 1.0
    """Seconds of ringing (180) before answering; 0 answers at once without 180."""
    early_media: bool = False
    """Send 183 Session Progress with the SDP answer instead of 180 and start the mode's
    audio (the announcement, the tone, the WAV) during ``ring_time``, like a carrier's
    in-band ringback or announcement."""
    no_answer_timeout: float = 60.0
    """``no-answer`` mode: seconds of ringing before giving up with 480."""
    record_dir: Path | None = None
    """Directory for one WAV per call of the audio received (8 kHz mono 16-bit); None
    records nothing."""
    dtmf_to_send: str = ""
    """RFC 4733 digits sent after the answer (``0``-``9``, ``*``, ``#``, ``A``-``D``)."""
    dtmf_delay: float = 1.0
    """Seconds after the answer before the first digit goes out."""
    dtmf_duration_ms: int = 100
    """Duration of each digit sent, in ms."""
    hangup_after: float | None = None
    """Seconds after the answer when the simulator hangs up (BYE); None: the peer does."""
    media_host: str | None = None
    """IP address for RTP (bound and announced in SDP); None: ``listen_host``, or
    ``127.0.0.1`` when that is a wildcard or a name."""
    media_port_range: tuple[int, int] | None = None
    """Inclusive UDP port range for RTP; None: any free port."""
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    """G.711 codecs in offer and preference order."""
    crypto_suites: tuple[str, ...] = DEFAULT_CRYPTO_SUITES
    """SDES suites accepted and offered, in order (plain RTP is always refused: 488)."""
    country_code: str | None = None
    """Country code for called numbers written nationally; None accepts E.164 only (others
    get 484)."""
    user: str = "carrier-sim"
    """The user part of the simulator's Contact."""
    ring_timeout: float = 60.0
    """Calls the simulator places: seconds of ringing before it gives up (CANCEL)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", SimMode(self.mode))
        if not 0 <= self.listen_port <= 65535:
            raise ValueError("listen_port must be 0..65535")
        if self.ssl_context is None and (self.certificate is None or self.private_key is None):
            raise ValueError("the listener needs ssl_context, or certificate and private_key")
        if self.mode is SimMode.PLAY and self.play_file is None:
            raise ValueError("mode 'play' needs play_file (a WAV, 8 kHz mono 16-bit)")
        if self.media_host is not None and not _is_ip(self.media_host):
            raise ValueError("media_host must be an IP address")
        self._check_media()
        self._check_times()

    def _check_media(self) -> None:
        if not 20.0 <= self.tone_hz <= 3800.0:
            raise ValueError("tone_hz must be 20..3800 (G.711 carries up to 4 kHz)")
        if not 0.0 < self.tone_level <= 1.0:
            raise ValueError("tone_level must be in (0, 1]")
        bad = [d for d in self.dtmf_to_send if d.upper() not in DTMF_DIGITS]
        if bad:
            raise ValueError(f"dtmf_to_send: {bad[0]!r} is not a DTMF digit")
        if self.dtmf_duration_ms < 40 or self.dtmf_duration_ms > 5000:
            raise ValueError("dtmf_duration_ms must be 40..5000")
        if not self.codecs or any(c.upper() not in CODECS for c in self.codecs):
            raise ValueError(f"codecs must be a non-empty list of {sorted(CODECS)}")
        if not self.crypto_suites or any(s not in SUITES for s in self.crypto_suites):
            raise ValueError("crypto_suites must be a non-empty list of SDES suite names")
        if self.media_port_range is not None:
            low, high = self.media_port_range
            if not 1024 <= low <= high <= 65535 or high - low < 1:
                raise ValueError("media_port_range must be (low, high) in 1024..65535, low < high")

    def _check_times(self) -> None:
        if self.tone_on <= 0 or self.tone_off < 0:
            raise ValueError("tone_on must be > 0 and tone_off >= 0")
        if self.ring_time < 0 or self.dtmf_delay < 0:
            raise ValueError("ring_time and dtmf_delay must be >= 0")
        if self.no_answer_timeout <= 0 or self.ring_timeout <= 0:
            raise ValueError("no_answer_timeout and ring_timeout must be > 0")
        if self.hangup_after is not None and self.hangup_after <= 0:
            raise ValueError("hangup_after must be > 0 (or None)")

    # -- derived ---------------------------------------------------------------------

    @property
    def media_address(self) -> str:
        """The IP address RTP binds and announces."""
        if self.media_host is not None:
            return self.media_host
        if _is_ip(self.listen_host) and not ipaddress.ip_address(self.listen_host).is_unspecified:
            return self.listen_host
        return "127.0.0.1"

    def server_context(self) -> ssl.SSLContext:
        """The listener's TLS context (no client certificate is asked for).

        Raises:
            TlsPolicyError: the certificate or key cannot be used.
        """
        if self.ssl_context is not None:
            return self.ssl_context
        assert self.certificate is not None and self.private_key is not None
        return server_context(
            TlsServerConfig(certificate_chain=self.certificate, private_key=self.private_key)
        )

    def inbound_trunk(self) -> TrunkConfig:
        """The trunk every inbound call arrives on: any IPv4 or IPv6 source is accepted."""
        return self._trunk(ANY_PEER, self.media_address, 5061, allowed_sources=_ANYWHERE)

    def outbound_trunk(
        self, name: str, host: str, port: int, *, server_name: str | None, ca_file: Path | None
    ) -> TrunkConfig:
        """A trunk toward one target the simulator dials (inbound requests on it: none).

        Raises:
            ValueError: ``host`` or ``port`` is unusable.
        """
        return self._trunk(
            name, host, port, server_name=server_name, ca_file=ca_file or self.ca_file
        )

    def _trunk(
        self,
        name: str,
        host: str,
        port: int,
        *,
        allowed_sources: tuple[str, ...] = (),
        server_name: str | None = None,
        ca_file: Path | None = None,
    ) -> TrunkConfig:
        return TrunkConfig(
            name=name,
            host=host,
            port=port,
            server_name=server_name,
            ca_file=ca_file if ca_file is not None else self.ca_file,
            allowed_sources=allowed_sources,
            country_code=self.country_code,
            codecs=self.codecs,
            crypto_suites=self.crypto_suites,
            ring_timeout=self.ring_timeout,
            options_interval=None,
        )
