"""The docker-compose deployment: the file is valid and everything it names exists and agrees.

Theory of operation: no container engine runs on these machines, so nothing here starts a
container. What is checked instead:

* ``docker-compose config -q`` (Debian's docker-compose) accepts the file with
  ``.env.example`` and refuses it without a password (nothing secret has a default);
* the resolved configuration (``docker-compose config``, YAML read by the interpreter that
  runs docker-compose, which has PyYAML; the project's venv has none) is checked service by
  service: each ``pstn-bridge`` command names a sub-command and options that
  ``pstn-bridge SUB --help`` lists, every bind-mounted file exists in the repository or is
  one that ``config/make-dev-certs.sh`` generates, every file the configurations name inside
  a container is mounted there, every service has a health check, the published UDP range
  is exactly ``sip.media_port_range``, and the fixed addresses agree with the configurations;
* ``config/bridge.compose.toml`` and ``config/carrier-sim.compose.toml`` load with
  :func:`bridge.settings.load_settings`;
* ``config/make-dev-certs.sh`` runs: its certificates chain (``openssl verify
  -x509_strict``), carry the names the services are reached by, pass the project's TLS
  policy, and keep their keys 0640;
* ``config/mosquitto.conf`` has one listener, TLS, and runs in a real mosquitto (container
  paths mapped to the generated files): the bridge's certificate publishes, an ops
  certificate only reads, a client without a certificate is refused, a TLS 1.2 cipher
  without AEAD is refused, nothing listens on 1883, and the broker's compose health check
  command succeeds.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sip_gateway.tls import TlsServerConfig, server_context
from tests.compose import (
    BRIDGE_CONFIG,
    CERT_SCRIPT,
    CLI,
    MOSQUITTO_CONF,
    REPO,
    SERVICES,
    SIM_CONFIG,
    address,
    binds,
    compose,
    make_dev_pki,
    mosquitto_conf,
    resolved,
    service,
    settings_of,
)
from tests.interop.peers import free_port, managed
from tests.mosquitto import mosquitto_binary


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files config/make-dev-certs.sh generates, in a temporary config/tls/."""
    directory = tmp_path_factory.mktemp("deploy") / "tls"
    return make_dev_pki(directory, "bridge.example.net", "192.0.2.10")


# -- the compose file --------------------------------------------------------------------------


def test_compose_file_validates_with_the_example_env_file() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr
    assert set(resolved()["services"]) == SERVICES


def test_compose_file_needs_the_uncommitted_env_file(tmp_path: Path) -> None:
    """Without .env the password has no default: the file is refused, naming the variable."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose("config", "-q", env_file=empty)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr
    ignored = subprocess.run(
        ["git", "check-ignore", ".env", "config/tls/bridge.key"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert ignored.stdout.split() == [".env", "config/tls/bridge.key"], "not in .gitignore"


def _cli_help(subcommand: str) -> str:
    result = subprocess.run(
        [str(CLI), subcommand, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"pstn-bridge {subcommand} --help: {result.stderr}"
    return result.stdout


def _check_cli_command(command: list[str], mounted: set[str]) -> None:
    assert command[0] == "pstn-bridge", command
    help_text = _cli_help(command[1])
    for option in (arg for arg in command[2:] if arg.startswith("--")):
        assert re.search(rf"(^|\s|\[){re.escape(option)}\b", help_text), (
            f"pstn-bridge {command[1]} has no option {option}"
        )
    config = command[command.index("--config") + 1]
    assert config in mounted, f"{config} is not mounted into the container"


def test_every_pstn_bridge_command_names_a_subcommand_and_its_options() -> None:
    checked = 0
    for name in SERVICES:
        command = service(name).get("command")
        if command and command[0] == "pstn-bridge":
            _check_cli_command(command, set(binds(name)))
            checked += 1
    assert checked == 2  # bridge and carrier-sim
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", dockerfile, re.M)[-1])
    assert cmd == service("bridge")["command"]


def test_other_commands_read_mounted_configuration() -> None:
    command = service("mosquitto")["command"]
    assert command[command.index("-c") + 1] in set(binds("mosquitto"))
    assert "command" not in service("postgres")  # the image's own


def test_every_mounted_file_exists_or_is_generated(pki: Path) -> None:
    generated = {path.name for path in pki.iterdir()}
    for name in SERVICES:
        for source in binds(name).values():
            relative = source.relative_to(REPO)
            assert relative.parts[0] == "config", f"{name} mounts {relative}, not from config/"
            if relative.parent == Path("config/tls"):
                assert relative.name in generated, f"make-dev-certs.sh makes no {relative}"
            else:
                assert source.is_file(), f"{name} mounts {relative}, which is not in the repo"


def _container_paths(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _container_paths(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _container_paths(item)
    elif isinstance(value, Path) and value.is_absolute():
        yield str(value)


@pytest.mark.parametrize(
    ("service", "config"), [("bridge", BRIDGE_CONFIG), ("carrier-sim", SIM_CONFIG)]
)
def test_files_named_by_a_configuration_are_mounted(service: str, config: Path) -> None:
    settings = settings_of(config)
    mounted = set(binds(service))
    var_dir = str(settings.node.var_dir)
    for path in _container_paths(settings.model_dump()):
        if path == var_dir:
            continue
        assert path in mounted, f"{config.name} names {path}, not mounted into {service}"


def test_every_service_has_a_health_check() -> None:
    for name in SERVICES:
        test = service(name).get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^HEALTHCHECK .*\n.*CMD \[.*/healthz", dockerfile, re.M)
    bridge_check = " ".join(service("bridge")["healthcheck"]["test"])
    assert "https://127.0.0.1:8443/healthz" in bridge_check


def _published(name: str, protocol: str) -> set[tuple[int, int]]:
    pairs = set()
    for port in service(name).get("ports", []):
        spec, _, proto = port.partition("/")
        if (proto or "tcp") != protocol:
            continue
        host, container = spec.split(":")[-2:]
        pairs.add((int(host), int(container)))
    return pairs


def test_published_udp_range_is_the_media_port_range() -> None:
    settings = settings_of(BRIDGE_CONFIG)
    assert settings.sip.media_port_range is not None
    low, high = settings.sip.media_port_range
    assert _published("bridge", "udp") == {(port, port) for port in range(low, high + 1)}
    assert _published("bridge", "tcp") == {
        (settings.http.listen_port, settings.http.listen_port),
        (settings.sip.listen_port, settings.sip.listen_port),
    }
    assert f"EXPOSE 8443/tcp 5061/tcp {low}-{high}/udp" in (REPO / "Dockerfile").read_text()
    assert _published("mosquitto", "tcp") == {(8883, 8883)}
    for name in ("carrier-sim", "postgres"):
        assert not service(name).get("ports"), f"{name} should not be published"


def test_bridge_configuration_validates_and_points_at_the_services() -> None:
    settings = settings_of(BRIDGE_CONFIG)
    bridge_ip, sim_ip = address("bridge"), address("carrier-sim")
    assert settings.sip.listen_host == bridge_ip
    assert settings.webrtc.ice_addresses == (bridge_ip,)
    assert not settings.carrier_sim.enabled
    (trunk,) = settings.trunks
    assert (trunk.host, trunk.port) == ("carrier-sim", 5062)
    assert trunk.allowed_sources == (f"{sim_ip}/32",)
    assert settings.store.url is not None
    assert settings.store.url.startswith("postgresql+asyncpg://pstn_bridge@postgres:5432/")
    assert ":" not in settings.store.url.split("//")[1].split("@")[0], "no password in the URL"
    assert (settings.events.broker_host, settings.events.broker_port) == ("mosquitto", 8883)
    assert settings.events.client_cert_file is not None
    assert "PGPASSWORD" in service("bridge")["environment"]


def test_carrier_sim_configuration_validates_and_matches_itsaddress() -> None:
    settings = settings_of(SIM_CONFIG)
    sim_ip = address("carrier-sim")
    assert settings.carrier_sim.listen_host == sim_ip
    assert settings.carrier_sim.media_host == sim_ip
    assert settings.carrier_sim.listen_port == 5062
    check = " ".join(service("carrier-sim")["healthcheck"]["test"])
    assert f"('{sim_ip}', 5062)" in check
    assert "server_hostname='carrier-sim'" in check


# -- certificates --------------------------------------------------------------------------------


def _sans(cert: Path) -> str:
    result = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout


def test_dev_certificates_chain_name_the_services_and_pass_the_tls_policy(pki: Path) -> None:
    leaves = ["bridge", "carrier-sim", "mosquitto", "ops"]
    verify = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(pki / "ca.crt")]
        + [str(pki / f"{leaf}.crt") for leaf in leaves],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    bridge_sans = _sans(pki / "bridge.crt")
    for name in ("DNS:bridge", f"IP Address:{address('bridge')}", "IP Address:127.0.0.1"):
        assert name in bridge_sans
    assert "DNS:bridge.example.net" in bridge_sans and "IP Address:192.0.2.10" in bridge_sans
    assert f"IP Address:{address('carrier-sim')}" in _sans(pki / "carrier-sim.crt")
    assert "DNS:mosquitto" in _sans(pki / "mosquitto.crt")
    for leaf in leaves:
        server_context(
            TlsServerConfig(certificate_chain=pki / f"{leaf}.crt", private_key=pki / f"{leaf}.key")
        )
        assert stat.S_IMODE((pki / f"{leaf}.key").stat().st_mode) == 0o640
    assert stat.S_IMODE(pki.stat().st_mode) == 0o750


def test_dev_certificates_script_keeps_existing_files(pki: Path) -> None:
    before = {path.name: path.read_bytes() for path in pki.iterdir()}
    result = subprocess.run(
        [str(CERT_SCRIPT)],
        env={**os.environ, "PSTN_TLS_DIR": str(pki)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert {path.name: path.read_bytes() for path in pki.iterdir()} == before


# -- mosquitto ------------------------------------------------------------------------------------


def _directives(conf: str) -> list[list[str]]:
    return [line.split() for line in conf.splitlines() if line.strip() and line[0] != "#"]


def test_mosquitto_conf_has_only_a_tls_listener() -> None:
    directives = _directives(MOSQUITTO_CONF.read_text(encoding="utf-8"))
    names = [words[0] for words in directives]
    listeners = [words for words in directives if words[0] == "listener"]
    assert listeners == [["listener", "8883"]]
    assert "port" not in names  # the old way to open a plain default listener
    assert ["protocol", "websockets"] not in directives
    settings = {words[0]: words[1:] for words in directives}
    after_listener = names[names.index("listener") :]
    for option in ("cafile", "certfile", "keyfile", "require_certificate"):
        assert option in after_listener, f"{option} missing from the 8883 listener"
    assert settings["require_certificate"] == ["true"]
    assert settings["allow_anonymous"] == ["false"]
    assert settings["tls_version"] == ["tlsv1.2"]
    mounted = set(binds("mosquitto"))
    for option in ("cafile", "certfile", "keyfile", "acl_file"):
        assert settings[option][0] in mounted


def _mqtt(tool: str, port: int, pki: Path, cert: str | None, *args: str) -> tuple[int, str]:
    command = [tool, "-h", "127.0.0.1", "-p", str(port), "--cafile", str(pki / "ca.crt")]
    if cert is not None:
        command += ["--cert", str(pki / f"{cert}.crt"), "--key", str(pki / f"{cert}.key")]
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=15, check=False
    )
    return result.returncode, result.stdout


def _handshake(port: int, pki: Path, *options: str) -> str:
    """``openssl s_client`` with the ops certificate: the negotiated cipher, or ""."""
    tls = [
        "-CAfile",
        str(pki / "ca.crt"),
        "-cert",
        str(pki / "ops.crt"),
        "-key",
        str(pki / "ops.key"),
    ]
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *tls, *options],
        input="",
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    found = re.search(r"Cipher is (\S+)", result.stdout)
    return "" if result.returncode != 0 or found is None else found.group(1).replace("(NONE)", "")


def test_mosquitto_conf_runs_tls_only_with_client_certificates(tmp_path: Path, pki: Path) -> None:
    port = free_port()
    conf = mosquitto_conf(tmp_path, pki, port)
    topic = "pstn-bridge/nodes/bridge-1/status"
    read = ("-t", "pstn-bridge/#", "-C", "1", "-W", "5", "-v")
    with managed([mosquitto_binary(), "-c", str(conf)], tmp_path / "broker.log", port=port):
        assert (
            _mqtt("mosquitto_pub", port, pki, "bridge", "-t", topic, "-m", "online", "-r")[0] == 0
        )
        assert _mqtt("mosquitto_sub", port, pki, "ops", *read) == (0, f"{topic} online\n")
        # ops may read, not write: the retained message stays the bridge's
        _mqtt("mosquitto_pub", port, pki, "ops", "-t", topic, "-m", "forged", "-r", "-q", "1")
        assert _mqtt("mosquitto_sub", port, pki, "ops", *read) == (0, f"{topic} online\n")
        # no client certificate: the handshake fails, nothing is read
        code, out = _mqtt("mosquitto_sub", port, pki, None, *read)
        assert code != 0 and out == ""
        # no plain MQTT anywhere: the default port is closed
        plain = subprocess.run(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", "1883", "-t", "#", "-C", "1", "-W", "2"],
            capture_output=True,
            timeout=15,
            check=False,
        )
        assert plain.returncode != 0
        # the project's TLS 1.2 policy: ECDHE with AEAD ciphers only
        aead = "ECDHE-ECDSA-AES128-GCM-SHA256"
        assert _handshake(port, pki, "-tls1_2", "-cipher", aead) == aead
        assert _handshake(port, pki, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256") == ""
        # the compose health check, its paths mapped, succeeds against this broker
        check = service("mosquitto")["healthcheck"]["test"][1:]
        mapped = [
            arg.replace("/mosquitto/config/tls/", f"{pki}/").replace("$$", "$") for arg in check
        ]
        mapped[mapped.index("-p") + 1] = str(port)
        assert subprocess.run(mapped, capture_output=True, timeout=15, check=False).returncode == 0
