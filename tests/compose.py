"""Reading the docker-compose deployment for tests (no container engine is ever used).

:func:`resolved` is ``docker-compose config`` with ``.env.example`` as a dict: Debian's
docker-compose prints YAML, and the interpreter that runs docker-compose (named by its
shebang) has PyYAML, which the project's venv has not, so that interpreter turns it into
JSON. :func:`service`, :func:`binds` and :func:`address` read one service from it.
:func:`make_dev_pki` runs ``config/make-dev-certs.sh`` into a directory of the caller's
choice. :func:`mapped_text` rewrites a configuration's container paths and service names to
what exists on this machine, insisting that each one is there (so a configuration that
drifts from its test fails instead of silently running something else).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.settings import Settings, load_settings

__all__ = [
    "BRIDGE_CONFIG",
    "CERT_SCRIPT",
    "CLI",
    "MOSQUITTO_ACL",
    "MOSQUITTO_CONF",
    "REPO",
    "SERVICES",
    "SIM_CONFIG",
    "address",
    "binds",
    "compose",
    "make_dev_pki",
    "mapped_text",
    "mosquitto_conf",
    "resolved",
    "service",
    "settings_of",
]

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / ".venv" / "bin" / "pstn-bridge"
BRIDGE_CONFIG = REPO / "config" / "bridge.compose.toml"
SIM_CONFIG = REPO / "config" / "carrier-sim.compose.toml"
MOSQUITTO_CONF = REPO / "config" / "mosquitto.conf"
MOSQUITTO_ACL = REPO / "config" / "mosquitto.acl"
CERT_SCRIPT = REPO / "config" / "make-dev-certs.sh"
SERVICES = frozenset({"bridge", "carrier-sim", "mosquitto", "postgres"})


def compose(*args: str, env_file: Path = REPO / ".env.example") -> subprocess.CompletedProcess[str]:
    """Run docker-compose in the repository with ``env_file`` (never a developer's .env)."""
    binary = shutil.which("docker-compose")
    assert binary is not None, "docker-compose is not installed (Debian package docker-compose)"
    # A clean environment: variables of the caller's shell must not fill in for the env file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(REPO)}
    return subprocess.run(
        [binary, "--env-file", str(env_file), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@functools.cache
def resolved() -> dict[str, Any]:
    """``docker-compose config`` (with ``.env.example``) as a dict."""
    result = compose("config")
    assert result.returncode == 0, result.stderr
    binary = shutil.which("docker-compose")
    assert binary is not None
    shebang = Path(binary).read_text(encoding="utf-8").splitlines()[0]
    interpreter = shlex.split(shebang.removeprefix("#!"))
    to_json = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    converted = subprocess.run(
        [*interpreter, "-c", to_json],
        input=result.stdout,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    data: dict[str, Any] = json.loads(converted.stdout)
    return data


def service(name: str) -> dict[str, Any]:
    """One service of :func:`resolved`."""
    found: dict[str, Any] = resolved()["services"][name]
    return found


def binds(name: str) -> dict[str, Path]:
    """Container target -> host source of every bind mount of a service."""
    found = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            found[target] = Path(source)
    return found


def address(name: str) -> str:
    """The fixed address of a service on the edge network."""
    found: str = service(name)["networks"]["edge"]["ipv4_address"]
    return found


def make_dev_pki(directory: Path, *names: str) -> Path:
    """Run ``config/make-dev-certs.sh NAMES...`` writing into ``directory``."""
    result = subprocess.run(
        [str(CERT_SCRIPT), *names],
        env={**os.environ, "PSTN_TLS_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return directory


def settings_of(path: Path) -> Settings:
    """:func:`load_settings` of ``path`` without the caller's ``PSTN_BRIDGE_*`` variables."""
    saved = {key: os.environ.pop(key) for key in list(os.environ) if key.startswith("PSTN_BRIDGE_")}
    try:
        return load_settings(path)
    finally:
        os.environ.update(saved)


def mapped_text(path: Path, mapping: Mapping[str, str]) -> str:
    """The file's text with each key of ``mapping`` (which must occur) replaced."""
    text = path.read_text(encoding="utf-8")
    for old, new in mapping.items():
        assert old in text, f"{path.name} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def mosquitto_conf(directory: Path, pki: Path, port: int) -> Path:
    """config/mosquitto.conf for a broker on 127.0.0.1:``port``, container paths mapped.

    The certificates are those of ``pki`` (:func:`make_dev_pki`), the ACL is the repository's,
    persistence goes to ``directory/data``.
    """
    text = mapped_text(
        MOSQUITTO_CONF,
        {
            "/mosquitto/config/tls/": f"{pki}/",
            "/mosquitto/config/mosquitto.acl": str(MOSQUITTO_ACL),
            "/mosquitto/data/": f"{directory}/data/",
            "\nlistener 8883\n": f"\nlistener {port} 127.0.0.1\n",
        },
    )
    (directory / "data").mkdir(parents=True, exist_ok=True)
    conf = directory / "mosquitto.conf"
    # as root, mosquitto would drop to user "mosquitto", which cannot read the 0640 keys
    conf.write_text(text + ("user root\n" if os.geteuid() == 0 else ""), encoding="utf-8")
    return conf
