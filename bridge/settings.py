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
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "HttpSettings",
    "LogSettings",
    "NodeSettings",
    "Settings",
    "SettingsError",
    "SipSettings",
    "TlsSettings",
    "load_settings",
]

Port = Annotated[int, Field(ge=0, le=65535)]  # 0: any free port (tests)


class SettingsError(Exception):
    """The configuration is invalid; the message names each offending option."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    @field_validator("cert_file", "key_file", "ca_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class SipSettings(_Section):
    """The SIP-over-TLS listener for carriers and gateways (RFC 3261, port 5061)."""

    listen_host: str = "127.0.0.1"
    listen_port: Port = 5061
    require_client_cert: bool = False
    max_message_size: int = Field(default=65536, ge=4096, le=1048576)
    max_connection_buffer: int = Field(default=262144, ge=8192, le=16777216)
    keepalive_interval: float = Field(default=30.0, ge=0.0, le=3600.0)
    idle_timeout: float = Field(default=300.0, ge=5.0, le=86400.0)
    realm: str = Field(default="pstn-bridge", min_length=1, max_length=128)

    _host = field_validator("listen_host")(_check_host)


class HttpSettings(_Section):
    """The HTTPS listener: dialer page, ops API and SIP over secure WebSocket (RFC 7118)."""

    listen_host: str = "127.0.0.1"
    listen_port: Port = 8443
    hsts_max_age: int = Field(default=31536000, ge=31536000)
    websocket_path: str = Field(default="/sip", pattern=r"^/[A-Za-z0-9._/-]*$")

    _host = field_validator("listen_host")(_check_host)


class LogSettings(_Section):
    """Logging of the bridge process."""

    level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


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
    log: LogSettings = LogSettings()

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
