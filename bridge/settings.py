"""Settings of the bridge: one TOML file, overridable by ``PSTN_BRIDGE_...`` variables.

Theory of operation: this is the only module that reads configuration files or the
environment. :func:`load_settings` reads the TOML file (when given), lets environment
variables override it (``PSTN_BRIDGE_SIP__LISTEN_PORT=5071`` sets ``sip.listen_port``),
validates everything with pydantic and returns a frozen :class:`Settings`. Any problem
raises :class:`SettingsError` whose message names the option and the problem;
``pstn-bridge serve`` prints it and exits non-zero. ``bridge.app`` maps the settings to
each package's own configuration objects; nothing else reads them.

Every option is documented in ``config/bridge.example.toml``; a test keeps the two in step.
"""

from __future__ import annotations

import tomllib
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "CallerIdSettings",
    "CarrierSimSettings",
    "DialPlanSettings",
    "EventsSettings",
    "HttpSettings",
    "LimitsSettings",
    "LogSettings",
    "MediaSettings",
    "NodeSettings",
    "OpsSettings",
    "Settings",
    "SettingsError",
    "SipSettings",
    "StoreSettings",
    "TlsSettings",
    "TrunkSettings",
    "UsersSettings",
    "WebRtcSettings",
    "load_settings",
]

Port = Annotated[int, Field(ge=0, le=65535)]  # 0: any free port (tests)
CryptoSuite = Literal[
    "AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"
]
CodecName = Literal["PCMU", "PCMA"]
Seconds = Annotated[float, Field(gt=0.0, le=86400.0)]


class SettingsError(Exception):
    """The configuration is invalid; the message names each offending option."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_unset(cls, data: Any) -> Any:
        """TOML has no null: an empty string stands for "not set" on optional options."""
        if not isinstance(data, dict):
            return data
        return {
            key: None
            if value == "" and key in cls.model_fields and cls.model_fields[key].default is None
            else value
            for key, value in data.items()
        }


def _check_host(value: str) -> str:
    try:
        ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address to listen on") from exc
    return value


class NodeSettings(_Section):
    """Identity of this bridge process and where it keeps its files."""

    id: str = Field(default="bridge-1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    var_dir: Path = Path("var")


class TlsSettings(_Section):
    """The certificate every listener presents; empty paths mean a generated development CA."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None


class SipSettings(_Section):
    """The SIP-over-TLS listener for carriers and gateways (RFC 3261, port 5061)."""

    listen_host: str = "127.0.0.1"
    listen_port: Port = 5061
    require_client_cert: bool = False
    max_message_size: int = Field(default=65536, ge=4096, le=1048576)
    max_connection_buffer: int = Field(default=262144, ge=8192, le=16777216)
    keepalive_interval: float = Field(default=30.0, ge=0.0, le=3600.0)
    idle_timeout: float = Field(default=300.0, ge=5.0, le=86400.0)
    handshake_timeout: float = Field(default=10.0, ge=0.5, le=120.0)
    message_timeout: float = Field(default=30.0, ge=0.5, le=3600.0)
    max_connections: int = Field(default=2048, ge=1, le=1000000)
    max_connections_per_source: int = Field(default=64, ge=1, le=1000000)
    realm: str = Field(default="pstn-bridge", min_length=1, max_length=128)
    media_port_range: tuple[Port, Port] | None = None
    media_timeout: float = Field(default=60.0, ge=0.0, le=3600.0)  # 0: never

    _host = field_validator("listen_host")(_check_host)

    @field_validator("media_port_range")
    @classmethod
    def _range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 0 < value[0] < value[1]:
            raise ValueError("media_port_range must be [low, high] with 0 < low < high")
        return value


class HttpSettings(_Section):
    """The HTTPS listener: dialer page, ops API and SIP over secure WebSocket (RFC 7118)."""

    listen_host: str = "127.0.0.1"
    listen_port: Port = 8443
    hsts_max_age: int = Field(default=31536000, ge=31536000)
    websocket_path: str = Field(default="/sip", pattern=r"^/[A-Za-z0-9._/-]*$")
    max_websockets: int = Field(default=2048, ge=1, le=1000000)
    max_websockets_per_source: int = Field(default=32, ge=1, le=1000000)
    max_connections: int = Field(default=4096, ge=1, le=1000000)
    max_connections_per_source: int = Field(default=128, ge=1, le=1000000)
    handshake_timeout: float = Field(default=10.0, ge=0.5, le=120.0)

    _host = field_validator("listen_host")(_check_host)


class CallerIdSettings(_Section):
    """How the calling number of an outbound call is presented to a carrier."""

    from_user: str | None = None
    default_caller_id: str | None = None
    allowed_prefixes: tuple[str, ...] = ()
    asserted_identity: bool = False
    anonymous: bool = False


class TrunkSettings(_Section):
    """One carrier trunk: SIP over TLS to its SBC, SRTP keyed by SDES (RFC 4568)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    host: str = Field(min_length=1, max_length=253)
    port: Port = 5061
    server_name: str | None = None
    ca_file: Path | None = None
    client_certificate: Path | None = None
    client_private_key: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    auth_realm: str | None = None
    registration: bool = False
    register_expires: int = Field(default=3600, ge=60, le=86400)
    register_refresh: float = Field(default=0.8, ge=0.1, le=0.95)
    register_retry: Seconds = 30.0
    from_domain: str | None = None
    allowed_sources: tuple[str, ...] = ()
    client_certificate_names: tuple[str, ...] = ()
    country_code: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,2}$")
    national_prefix: str = Field(default="0", pattern=r"^[0-9]{0,4}$")
    international_prefix: str = Field(default="00", pattern=r"^[0-9]{0,4}$")
    caller_id: CallerIdSettings = CallerIdSettings()
    codecs: tuple[CodecName, ...] = Field(default=("PCMU", "PCMA"), min_length=1)
    crypto_suites: tuple[CryptoSuite, ...] = Field(
        default=("AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"), min_length=1
    )
    telephone_event: bool = True
    ptime: int = Field(default=20, ge=10, le=60)
    ring_timeout: Seconds = 120.0
    options_interval: float = Field(default=30.0, ge=0.0, le=3600.0)
    options_timeout: Seconds = 5.0
    options_failures: int = Field(default=2, ge=1, le=100)
    session_timer: bool = True
    session_expires: int = Field(default=1800, ge=90, le=86400)
    min_se: int = Field(default=90, ge=90, le=86400)
    refresh_method: Literal["INVITE", "UPDATE"] = "INVITE"
    max_channels: int = Field(default=100, ge=1, le=100000)

    @model_validator(mode="after")
    def _pairs(self) -> TrunkSettings:
        if (self.client_certificate is None) != (self.client_private_key is None):
            raise ValueError("client_certificate and client_private_key go together")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.registration and self.username is None:
            raise ValueError("registration needs username and password")
        if self.session_expires < self.min_se:
            raise ValueError("session_expires must be at least min_se")
        return self


def _default_trunks() -> list[TrunkSettings]:
    """The embedded default: the carrier simulator on 127.0.0.1:5062, trusted via the dev CA."""
    return [
        TrunkSettings(
            name="carrier-sim", host="127.0.0.1", port=5062, allowed_sources=("127.0.0.1/32",)
        )
    ]


class CarrierSimSettings(_Section):
    """The built-in PSTN gateway simulator, started in-process (the embedded default trunk)."""

    enabled: bool = True
    listen_host: str = "127.0.0.1"
    listen_port: Port = 5062
    mode: Literal["echo", "tone", "play", "busy", "no-answer"] = "echo"
    announcement: bool = True
    early_media: bool = False
    ring_time: float = Field(default=1.0, ge=0.0, le=300.0)
    no_answer_timeout: Seconds = 60.0
    play_file: Path | None = None
    tone_hz: float = Field(default=425.0, ge=50.0, le=3800.0)
    record_dir: Path | None = None
    dtmf_to_send: str = Field(default="", pattern=r"^[0-9*#A-D]*$", max_length=64)
    dtmf_delay: float = Field(default=1.0, ge=0.0, le=3600.0)
    hangup_after: Seconds | None = None
    media_host: str | None = None
    media_port_range: tuple[Port, Port] | None = None

    _host = field_validator("listen_host")(_check_host)

    @model_validator(mode="after")
    def _play_needs_file(self) -> CarrierSimSettings:
        if self.mode == "play" and self.play_file is None:
            raise ValueError("mode 'play' needs play_file (a WAV, 8 kHz mono 16-bit)")
        if self.media_port_range is not None:
            low, high = self.media_port_range
            if not 0 < low < high:
                raise ValueError("media_port_range must be [low, high] with 0 < low < high")
        if self.media_host is not None:
            _check_host(self.media_host)
        return self


OpusComplexity = Annotated[int, Field(ge=0, le=10)]
WebRtcCodec = Literal["opus", "PCMU", "PCMA"]


class WebRtcSettings(_Section):
    """The browser leg's media: ICE host addresses, STUN/TURN, codecs, Opus encoder."""

    ice_addresses: tuple[str, ...] = Field(default=("127.0.0.1",), min_length=1)
    stun_servers: tuple[str, ...] = ()
    turn_servers: tuple[str, ...] = ()
    turn_username: str | None = None
    turn_password: SecretStr | None = None
    codecs: tuple[WebRtcCodec, ...] = Field(default=("opus", "PCMU", "PCMA"), min_length=1)
    opus_complexity: OpusComplexity = 0
    opus_bitrate: int = Field(default=32000, ge=6000, le=128000)
    opus_constant_bitrate: bool = True
    max_remote_candidates: int = Field(default=32, ge=1, le=256)
    connect_timeout: Seconds = 15.0

    @field_validator("ice_addresses")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            _check_host(address)
        return value

    @field_validator("stun_servers", "turn_servers")
    @classmethod
    def _servers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for server in value:
            scheme, _, rest = server.partition(":")
            if scheme not in ("stun", "turn", "turns") or not rest:
                raise ValueError(f"{server!r} is not a stun:, turn: or turns: URL")
        return value

    @model_validator(mode="after")
    def _turn_credentials(self) -> WebRtcSettings:
        if self.turn_servers and (self.turn_username is None or self.turn_password is None):
            raise ValueError("turn_servers need turn_username and turn_password")
        return self


class StoreSettings(_Section):
    """The database of users and call records (CDRs), and how CDR writes are buffered."""

    url: str | None = None
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    max_retries: int = Field(default=5, ge=0, le=100)
    retry_initial: Seconds = 0.5
    retry_max: Seconds = 30.0
    spill_file: Path | None = None  # None: <var_dir>/cdr-spill.jsonl
    tls: bool = False
    ca_file: Path | None = None  # None: the system trust store

    @model_validator(mode="after")
    def _retry_order(self) -> StoreSettings:
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must not be below retry_initial")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file needs tls = true")
        return self


class UsersSettings(_Section):
    """Browser users: the demo user of the embedded defaults."""

    demo_user: str = Field(default="demo", pattern=r"^[A-Za-z0-9._-]{0,64}$")  # "": none
    demo_did: str = Field(default="+15005550100", pattern=r"^\+[1-9][0-9]{5,14}$")


E164Prefix = Annotated[str, Field(pattern=r"^\+[0-9]{0,15}$")]


class DialPlanSettings(_Section):
    """Outbound dial plan: E.164 normalisation, allowed and blocked prefixes, the trunk."""

    country_code: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,2}$")
    national_prefix: str = Field(default="0", pattern=r"^[0-9]{0,4}$")
    international_prefix: str = Field(default="00", pattern=r"^[0-9]{0,4}$")
    allowed_prefixes: tuple[E164Prefix, ...] = ("+",)
    blocked_prefixes: tuple[E164Prefix, ...] = (
        "+1900",
        "+1976",
        "+44871",
        "+44872",
        "+44873",
        "+4490",
        "+4491",
        "+4498",
        "+3389",
        "+49900",
        "+39899",
        "+882",
        "+883",
        "+881",
        "+870",
        "+979",
        "+4470",
    )
    trunk: str | None = None


class LimitsSettings(_Section):
    """Toll-fraud and brute-force limits."""

    max_concurrent_calls_per_user: int = Field(default=2, ge=1, le=1000)
    max_calls_per_minute_per_user: int = Field(default=10, ge=1, le=10000)
    auth_failures_before_block: int = Field(default=5, ge=1, le=1000)
    auth_failure_window: Seconds = 60.0
    auth_block_time: Seconds = 300.0
    auth_delay_step: float = Field(default=0.25, ge=0.0, le=10.0)
    auth_max_delay: float = Field(default=2.0, ge=0.0, le=30.0)
    browser_request_rate: float = Field(default=50.0, gt=0.0, le=100000.0)
    browser_request_burst: int = Field(default=400, ge=1, le=1000000)
    carrier_request_rate: float = Field(default=100.0, gt=0.0, le=100000.0)
    carrier_request_burst: int = Field(default=400, ge=1, le=1000000)


class MediaSettings(_Section):
    """Where the calls' media runs (ICE/DTLS-SRTP, SDES-SRTP, transcoding)."""

    workers: Literal["auto"] | Annotated[int, Field(ge=0, le=256)] = "auto"
    """Media worker processes: ``auto`` is one per CPU core; 0 runs media in the
    signaling process."""


class LogSettings(_Section):
    """Logging of the bridge process."""

    level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class OpsSettings(_Section):
    """The ops API on the HTTPS listener: bearer token, rate limit, live stream."""

    api_token: SecretStr | None = None  # empty: generated once into <var_dir>/ops-token
    requests_per_second: float = Field(default=20.0, gt=0.0, le=10000.0)
    burst: int = Field(default=40, ge=1, le=100000)
    max_stream_clients: int = Field(default=16, ge=1, le=1000)
    stream_queue: int = Field(default=256, ge=16, le=65536)

    @field_validator("api_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("api_token must be at least 16 characters (or empty: generated)")
        return value


class EventsSettings(_Section):
    """Call updates and node status published to an MQTT broker (TLS only); empty host: none."""

    broker_host: str | None = Field(default=None, max_length=253)
    broker_port: Port = 8883
    topic_prefix: str = Field(
        default="pstn-bridge", pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", max_length=128
    )
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    queue_size: int = Field(default=1000, ge=1, le=1000000)
    keepalive: int = Field(default=30, ge=2, le=3600)
    reconnect_max: float = Field(default=30.0, ge=0.5, le=3600.0)

    @model_validator(mode="after")
    def _pairs(self) -> EventsSettings:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file go together")
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        return self


class Settings(BaseSettings):
    """Everything ``pstn-bridge serve`` needs; defaults are the embedded development setup."""

    model_config = SettingsConfigDict(
        env_prefix="PSTN_BRIDGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    node: NodeSettings = NodeSettings()
    tls: TlsSettings = TlsSettings()
    sip: SipSettings = SipSettings()
    http: HttpSettings = HttpSettings()
    trunks: list[TrunkSettings] = Field(default_factory=_default_trunks)
    carrier_sim: CarrierSimSettings = CarrierSimSettings()
    webrtc: WebRtcSettings = WebRtcSettings()
    store: StoreSettings = StoreSettings()
    users: UsersSettings = UsersSettings()
    dialplan: DialPlanSettings = DialPlanSettings()
    limits: LimitsSettings = LimitsSettings()
    media: MediaSettings = MediaSettings()
    log: LogSettings = LogSettings()
    events: EventsSettings = EventsSettings()
    ops: OpsSettings = OpsSettings()

    @model_validator(mode="after")
    def _unique_trunk_names(self) -> Settings:
        names = [trunk.name for trunk in self.trunks]
        if len(names) != len(set(names)):
            raise ValueError("trunk names must be unique")
        if self.dialplan.trunk is not None and self.dialplan.trunk not in names:
            raise ValueError(f"dialplan.trunk {self.dialplan.trunk!r} is not a configured trunk")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the file's values (passed as init values)."""
        return (env_settings, init_settings)


def load_settings(path: Path | None = None) -> Settings:
    """Read, merge and validate the configuration.

    Args:
        path: the TOML file, or None for the embedded defaults (environment still applies).

    Raises:
        SettingsError: the file is missing or not TOML, or an option is invalid.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"config file {path}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path}: not valid TOML: {exc}") from exc
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path)) from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f"config file {path}" if path is not None else "configuration"
    lines = [f"{where} is invalid:"]
    for err in exc.errors(include_url=False, include_input=False):
        option = ".".join(str(part) for part in err["loc"]) or "(top level)"
        message = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  option {option}: {message}")
    return "\n".join(lines)
