"""The compose deployment's configurations, run as processes on this machine (no containers).

Theory of operation: no container engine runs here, so this test does the next best thing
with the real programs. In the test's own network namespace (only ``lo``, as ``make test``
runs pytest) it puts the compose edge addresses of the bridge and the carrier simulator on
``lo``, generates the certificates with ``config/make-dev-certs.sh``, and starts:

* mosquitto with ``config/mosquitto.conf`` and ``config/mosquitto.acl``;
* the carrier simulator with the compose service's command and
  ``config/carrier-sim.compose.toml``;
* the bridge with the compose service's command and ``config/bridge.compose.toml``, storing
  into a real PostgreSQL (``tests/postgres.py``).

Only what a container provides and this machine cannot is mapped, and every mapping must
match the file (:func:`tests.compose.mapped_text`): the container paths become the
temporary directory, the service names become addresses (``carrier-sim`` -> its edge
address with ``server_name = "carrier-sim"``, ``mosquitto`` -> ``localhost``, ``postgres``
-> the test cluster; no DNS here), and the broker listens on a free port. Then the compose
health checks of the bridge and the simulator (their commands, CA path mapped) must pass, the
bridge's trunk must come up over TLS to the simulator by its certificate name, the README's
``pstn-bridge calls --config ... --url https://127.0.0.1:8443`` must work, the bridge's
retained ``online`` status must reach an ops subscriber through the broker's ACL, and the
store's tables and the demo user must be in PostgreSQL.

Not exercised (needs a container engine): the images, Docker's networks and published
ports, the non-root users and group_add, the postgres and mosquitto images' entrypoints, and
PostgreSQL password authentication (the test cluster trusts loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import pytest

from tests.compose import (
    BRIDGE_CONFIG,
    CLI,
    SIM_CONFIG,
    address,
    binds,
    make_dev_pki,
    mapped_text,
    mosquitto_conf,
    service,
)
from tests.interop.peers import free_port, managed, wait_log
from tests.mosquitto import mosquitto_binary
from tests.postgres import PostgresServer

pytestmark = pytest.mark.timeout(120)


def _require_isolated_network() -> None:
    names = {name for _, name in socket.if_nameindex()}
    if names != {"lo"}:
        pytest.fail(
            f"this test adds addresses to lo: run it in a network namespace with only lo "
            f"(make test does; by hand: unshare --net), not beside {sorted(names - {'lo'})}"
        )


@contextlib.contextmanager
def _on_loopback(*addresses: str) -> Iterator[None]:
    for ip in addresses:
        subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], check=True, timeout=10)
    try:
        yield
    finally:
        for ip in addresses:
            subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], timeout=10, check=False)


def _command(name: str, config: Path) -> list[str]:
    """The service's command with the CLI of the venv and its mounted config mapped."""
    command = list(service(name)["command"])
    assert command[0] == "pstn-bridge"
    index = command.index("--config") + 1
    assert command[index] in binds(name)
    command[index] = str(config)
    return [str(CLI), *command[1:]]


def _health_check(name: str, pki: Path) -> subprocess.CompletedProcess[str]:
    test = service(name)["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    code = test[3].replace("/etc/pstn-bridge/tls/", f"{pki}/")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=15, check=False
    )


def _configs(tmp_path: Path, pki: Path, db_url: str, broker_port: int) -> tuple[Path, Path]:
    paths: Mapping[str, str] = {
        "/etc/pstn-bridge/tls/": f"{pki}/",
        '"/var/lib/pstn-bridge"': f'"{tmp_path / "var"}"',
    }
    sim = tmp_path / "carrier-sim.toml"
    sim.write_text(mapped_text(SIM_CONFIG, paths), encoding="utf-8")
    services = {
        'host = "carrier-sim"': f'host = "{address("carrier-sim")}"\nserver_name = "carrier-sim"',
        '"postgresql+asyncpg://pstn_bridge@postgres:5432/pstn_bridge"': f'"{db_url}"',
        'broker_host = "mosquitto"': 'broker_host = "localhost"',
        "broker_port = 8883": f"broker_port = {broker_port}",
    }
    bridge = tmp_path / "bridge.toml"
    bridge.write_text(mapped_text(BRIDGE_CONFIG, {**paths, **services}), encoding="utf-8")
    return bridge, sim


async def _database_state(url: str) -> tuple[set[str], list[str]]:
    """The tables of the database and the names of its users."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = {row["tablename"] for row in await conn.fetch("SELECT tablename FROM pg_tables")}
        users = [row["name"] for row in await conn.fetch("SELECT name FROM users")]
    finally:
        await conn.close()
    return tables, users


def _node_status(port: int, pki: Path) -> subprocess.CompletedProcess[str]:
    """The retained status of bridge-1, read as the ops user (config/tls/ops.crt)."""
    command = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "--cafile", str(pki / "ca.crt")]
    command += ["--cert", str(pki / "ops.crt"), "--key", str(pki / "ops.key")]
    command += ["-t", "pstn-bridge/nodes/bridge-1/status", "-C", "1", "-W", "10"]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )


def test_compose_configurations_run_as_processes(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    _require_isolated_network()
    pki = make_dev_pki(tmp_path / "tls")
    db_url = asyncio.run(postgres_server.new_database())
    broker_port = free_port()
    conf = mosquitto_conf(tmp_path / "broker", pki, broker_port)
    bridge_toml, sim_toml = _configs(tmp_path, pki, db_url, broker_port)
    with _on_loopback(address("bridge"), address("carrier-sim")), ExitStack() as stack:
        broker_log = tmp_path / "broker.log"
        stack.enter_context(
            managed([mosquitto_binary(), "-c", str(conf)], broker_log, port=broker_port)
        )
        sim_log = tmp_path / "carrier-sim.log"
        stack.enter_context(
            managed(_command("carrier-sim", sim_toml), sim_log, port=5062, ready_timeout=30)
        )
        check = _health_check("carrier-sim", pki)
        assert check.returncode == 0, check.stderr
        bridge_log = tmp_path / "bridge.log"
        env = {**os.environ, "PGPASSWORD": "unchecked-by-the-trusting-test-cluster"}
        bridge = stack.enter_context(
            managed(
                _command("bridge", bridge_toml), bridge_log, port=8443, env=env, ready_timeout=30
            )
        )
        check = _health_check("bridge", pki)
        assert check.returncode == 0, check.stderr + bridge.log_tail()
        wait_log(bridge_log, "trunk carrier-sim is up", timeout=20)
        # the README's ops command (run with docker-compose exec in the container)
        calls = subprocess.run(
            [str(CLI), "calls", "--config", str(bridge_toml), "--url", "https://127.0.0.1:8443"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert calls.returncode == 0, calls.stderr
        status = _node_status(broker_port, pki)
        assert status.returncode == 0, status.stderr + bridge.log_tail()
        assert json.loads(status.stdout)["state"] == "online"
        tables, users = asyncio.run(_database_state(db_url))
        missing = {"calls", "legs", "call_events", "users"} - tables
        assert not missing, f"no {sorted(missing)} in PostgreSQL: is the CDR store started?"
        assert users == ["demo"]
