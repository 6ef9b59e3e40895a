"""Trunk configuration: one frozen object per carrier, and the number rules it implies.

Theory of operation: a :class:`TrunkConfig` says everything the gateway leg needs to talk
to one carrier: where its SBC is and how its TLS certificate is checked, the digest
credentials and optional registration, how inbound requests from it are recognised
(source addresses and/or client certificate names), how numbers are written (E.164
normalisation, caller-ID rules), the media policy (codec and SDES suite order) and the
keep-alive and session-timer intervals. ``bridge.app`` builds it from settings; nothing here
reads files or the environment. Validation happens at construction, so the rest of the
package never sees an impossible trunk.

:func:`normalize_e164` is the one number normaliser (outbound called and calling numbers,
inbound DIDs); it raises :class:`~sip_gateway.trunk.errors.InvalidNumberError` (484).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from sip_gateway.sdp import DEFAULT_CRYPTO_SUITES, PCMA, PCMU, SUITES, CodecSpec, MediaProfile
from sip_gateway.sip.auth import DigestAccount
from sip_gateway.tls import TlsClientConfig

from .errors import InvalidNumberError

__all__ = [
    "CODECS",
    "RFC4028_MIN_SE",
    "CallerIdRules",
    "TrunkConfig",
    "normalize_e164",
]

CODECS: dict[str, CodecSpec] = {"PCMU": PCMU, "PCMA": PCMA}
"""Codecs the gateway leg can carry, by configuration name."""
RFC4028_MIN_SE = 90
"""The smallest session interval RFC 4028 (section 4) allows, in seconds."""
_SEPARATORS = re.compile(r"[\s\-.()/]")
_DIGITS = re.compile(r"[0-9]{1,15}")
_SIP_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")


def normalize_e164(
    number: str,
    *,
    country_code: str | None = None,
    national_prefix: str = "0",
    international_prefix: str = "00",
) -> str:
    """Write a telephone number as E.164: ``+`` and 1 to 15 digits, no leading zero.

    Accepted forms: ``+CC...`` (also ``%2B`` escaped, as in a SIP URI user), the
    international prefix (``00CC...``), and, when ``country_code`` is known, a national
    number starting with ``national_prefix`` (``0...`` in most countries, ``1...`` in
    NANP). With an empty ``national_prefix`` any other digit string is taken as national.
    Visual separators (spaces, ``-``, ``.``, ``(``, ``)``, ``/``) and URI parameters after
    ``;`` are ignored.

    Raises:
        InvalidNumberError: the text is not a number that can be written as E.164 (484).
    """
    text = unquote(number.split(";", 1)[0])
    text = _SEPARATORS.sub("", text)
    if text.startswith("+"):
        digits = text[1:]
    elif international_prefix and text.startswith(international_prefix):
        digits = text[len(international_prefix) :]
    elif country_code and national_prefix and text.startswith(national_prefix):
        digits = country_code + text[len(national_prefix) :]
    elif country_code and not national_prefix:
        digits = country_code + text
    else:
        raise InvalidNumberError(f"{_shown(number)} is not an E.164 or known national number")
    if _DIGITS.fullmatch(digits) is None or digits.startswith("0"):
        raise InvalidNumberError(f"{_shown(number)} does not normalise to E.164")
    return "+" + digits


def _shown(number: str) -> str:
    """The number for a message: printable and bounded."""
    clean = "".join(c if c.isprintable() else "?" for c in number[:40])
    return repr(clean)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerIdRules:
    """How the calling number of an outbound call is presented to the carrier."""

    from_user: str | None = None
    """A fixed user part for From (carriers that want the account name there); the caller
    ID then travels in P-Asserted-Identity. None puts the caller ID in From."""
    default_caller_id: str | None = None
    """E.164 number presented when the caller has none, or one that is not allowed."""
    allowed_prefixes: tuple[str, ...] = ()
    """E.164 prefixes (``+4420``) a caller ID must start with; others are replaced by
    ``default_caller_id`` (numbers the carrier lets us present). Empty allows any."""
    asserted_identity: bool = False
    """Add P-Asserted-Identity with the caller ID (RFC 3325; trusted carriers only)."""
    anonymous: bool = False
    """Present no number: From ``anonymous@anonymous.invalid`` plus ``Privacy: id`` (the
    caller ID, if any, stays in P-Asserted-Identity when that is enabled)."""

    def __post_init__(self) -> None:
        if self.from_user is not None and _SIP_USER.fullmatch(self.from_user) is None:
            raise ValueError("caller_id.from_user must be a SIP URI user part")
        for prefix in self.allowed_prefixes:
            if not prefix.startswith("+") or _DIGITS.fullmatch(prefix[1:]) is None:
                raise ValueError(f"caller_id.allowed_prefixes: {prefix!r} is not +digits")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkConfig:
    """One carrier trunk: SIP over TLS to its SBC, SRTP keyed by SDES.

    Raises:
        ValueError: (at construction) a field is out of range or inconsistent.
    """

    name: str
    """Short name for logs, metrics and the call record (``carrier-a``)."""
    host: str
    """The carrier SBC: DNS name or IP address (IPv6 without brackets)."""
    port: int = 5061
    """Its SIP-TLS port."""
    server_name: str | None = None
    """The name its certificate must carry; None means ``host`` (an IP is matched against the
    certificate's IP SANs)."""
    ca_file: Path | None = None
    """PEM bundle trusted to anchor the carrier's certificate; None uses the system store."""
    client_certificate: Path | None = None
    """Our certificate chain (PEM) for mutual TLS, or None."""
    client_private_key: Path | None = None
    """The key of ``client_certificate``; set both or neither."""
    username: str | None = None
    """Digest user name; None when the carrier authenticates us by address or certificate."""
    password: str | None = field(default=None, repr=False)
    """Digest password (never shown)."""
    auth_realm: str | None = None
    """Only answer challenges of this realm (advisable: a stranger's challenge then gets no
    answer to guess at); None answers any realm."""
    register: bool = False
    """Register with the carrier (REGISTER with digest) and keep the binding fresh."""
    register_expires: int = 3600
    """Registration lifetime we ask for, in seconds."""
    register_refresh: float = 0.8
    """Re-register after this fraction of the lifetime the registrar granted."""
    register_retry: float = 30.0
    """Seconds before a failed registration is tried again."""
    from_domain: str | None = None
    """Host part of our From and registration AOR; None means ``host``."""
    allowed_sources: tuple[str, ...] = ()
    """Inbound: source networks (CIDR, ``203.0.113.0/28``; a bare address is a /32 or /128)
    the carrier sends from."""
    client_certificate_names: tuple[str, ...] = ()
    """Inbound: DNS names or IP addresses of which the carrier's verified client certificate
    must carry at least one (mutual TLS). With ``allowed_sources`` too, both must match; a
    trunk with neither never accepts inbound requests."""
    country_code: str | None = None
    """Country calling code (``44``) for numbers written nationally; None accepts only
    international forms."""
    national_prefix: str = "0"
    """Trunk prefix of national numbers (``0``; ``1`` in NANP; empty: none)."""
    international_prefix: str = "00"
    """International call prefix (``00``; ``011`` in NANP)."""
    caller_id: CallerIdRules = field(default_factory=CallerIdRules)
    """How our calling number is presented."""
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    """Codecs in offer order (names from :data:`CODECS`)."""
    crypto_suites: tuple[str, ...] = DEFAULT_CRYPTO_SUITES
    """SDES suites accepted, in offer order (DESIGN section 5)."""
    telephone_event: bool = True
    """Offer and accept RFC 4733 DTMF."""
    ptime: int = 20
    """Packetization time we announce, in ms."""
    ring_timeout: float = 120.0
    """Seconds an outbound call may ring before we CANCEL it (no answer)."""
    options_interval: float | None = 30.0
    """Seconds between OPTIONS keep-alives marking the trunk up or down; None disables."""
    options_timeout: float = 5.0
    """Seconds an OPTIONS may wait for its response."""
    options_failures: int = 2
    """Consecutive failed OPTIONS before the trunk is marked down."""
    session_timer: bool = True
    """Use RFC 4028 session timers (offered as UAC, honoured as UAS)."""
    session_expires: int = 1800
    """Session interval we ask for, in seconds (RFC 4028 recommends 1800)."""
    min_se: int = RFC4028_MIN_SE
    """The smallest session interval we accept (Min-SE), at least 90."""
    refresh_method: str = "INVITE"
    """Session refresh request when we are the refresher: ``INVITE`` or ``UPDATE``."""

    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        if not self.name or not self.host:
            raise ValueError("a trunk needs a name and a host")
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be 1..65535")
        if (self.client_certificate is None) != (self.client_private_key is None):
            raise ValueError("client_certificate and client_private_key go together")
        if self.register and (self.username is None or self.password is None):
            raise ValueError("register needs username and password")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        self._check_numbers()
        self._check_media()
        self._check_timers()
        try:
            networks = tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_sources)
        except ValueError as exc:
            raise ValueError(f"allowed_sources: {exc}") from None
        object.__setattr__(self, "_networks", networks)

    def _check_numbers(self) -> None:
        if self.country_code is not None and _DIGITS.fullmatch(self.country_code) is None:
            raise ValueError("country_code must be digits")
        for prefix in (self.national_prefix, self.international_prefix):
            if prefix and _DIGITS.fullmatch(prefix) is None:
                raise ValueError("national and international prefixes must be digits")

    def _check_media(self) -> None:
        unknown = [c for c in self.codecs if c.upper() not in CODECS]
        if not self.codecs or unknown:
            raise ValueError(f"codecs must be a non-empty list of {sorted(CODECS)}")
        bad = [s for s in self.crypto_suites if s not in SUITES]
        if not self.crypto_suites or bad:
            raise ValueError(f"crypto_suites must be a non-empty list of {sorted(SUITES)}")

    def _check_timers(self) -> None:
        if self.min_se < RFC4028_MIN_SE or self.session_expires < self.min_se:
            raise ValueError("need session_expires >= min_se >= 90 (RFC 4028)")
        if self.refresh_method not in ("INVITE", "UPDATE"):
            raise ValueError("refresh_method must be INVITE or UPDATE")
        if not 0.1 <= self.register_refresh <= 0.95 or self.register_expires < 1:
            raise ValueError("register_refresh must be 0.1..0.95, register_expires >= 1")
        if self.options_interval is not None and self.options_interval <= 0:
            raise ValueError("options_interval must be positive or None")
        if self.ring_timeout <= 0 or self.options_timeout <= 0 or self.options_failures < 1:
            raise ValueError("ring_timeout, options_timeout and options_failures must be > 0")

    # -- derived facts ---------------------------------------------------------------

    @property
    def tls_server_name(self) -> str:
        """The name the carrier's certificate is checked against."""
        return self.server_name or self.host

    @property
    def domain(self) -> str:
        """Host part of our From and of the registration AOR."""
        return self.from_domain or self.host

    def tls_client_config(self) -> TlsClientConfig:
        """The connector configuration for :func:`sip_gateway.tls.client_context`."""
        return TlsClientConfig(
            ca_file=self.ca_file,
            server_hostname=self.tls_server_name,
            certificate_chain=self.client_certificate,
            private_key=self.client_private_key,
        )

    def media_profile(self) -> MediaProfile:
        """The SDES-SRTP media policy of this trunk (``RTP/SAVP`` only)."""
        return MediaProfile(
            codecs=tuple(CODECS[c.upper()] for c in self.codecs),
            crypto_suites=self.crypto_suites,
            telephone_event=self.telephone_event,
            ptime=self.ptime,
        )

    def digest_account(self) -> DigestAccount | None:
        """Our digest credentials, or None when the trunk has none."""
        if self.username is None or self.password is None:
            return None
        return DigestAccount(username=self.username, password=self.password, realm=self.auth_realm)

    def normalize(self, number: str) -> str:
        """``number`` in E.164 under this trunk's national rules.

        Raises:
            InvalidNumberError: it cannot be written as E.164 (484).
        """
        return normalize_e164(
            number,
            country_code=self.country_code,
            national_prefix=self.national_prefix,
            international_prefix=self.international_prefix,
        )

    @property
    def accepts_inbound(self) -> bool:
        """True when inbound requests can be recognised as this trunk's."""
        return bool(self._networks or self.client_certificate_names)

    def source_allowed(self, address: str) -> bool:
        """True when ``address`` is in ``allowed_sources`` (or none are configured)."""
        if not self._networks:
            return True
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def certificate_allowed(self, names: frozenset[str]) -> bool:
        """True when the verified certificate names one of ``client_certificate_names`` (or
        none are configured)."""
        if not self.client_certificate_names:
            return True
        wanted = {name.lower() for name in self.client_certificate_names}
        return not wanted.isdisjoint(names)

    def matches_peer(self, address: str, certificate_names: frozenset[str]) -> bool:
        """True when an inbound connection from ``address`` with these verified certificate
        names belongs to this trunk (every configured criterion holds)."""
        return (
            self.accepts_inbound
            and self.source_allowed(address)
            and self.certificate_allowed(certificate_names)
        )
