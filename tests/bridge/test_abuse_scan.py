"""SIPVicious 0.3.8 against the bridge: it speaks only UDP, so it finds nothing at all.

``sipvicious_svmap`` (discovery), ``sipvicious_svwar`` (extension enumeration) and
``sipvicious_svcrack`` (password guessing) are run against the bridge's SIP-TLS and HTTPS
ports on loopback: none gets a single answer over UDP, which shows
there is no plain-SIP entry point. As a control, the same commands find a toy UDP SIP
responder started by the test (a device and its one extension), so the test can fail.
The tools run at the same time (each waits about 3 s for answers that do not come).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bridge import test_calls as _call_fixtures
from tests.bridge.test_calls import Harness
from tests.interop.peers import free_port

bridge = _call_fixtures.bridge
pki = _call_fixtures.pki

_BIN = Path(sys.executable).parent
EXTENSION = "101"


def _tool(name: str) -> str:
    path = _BIN / f"sipvicious_{name}"
    if not path.exists():
        found = shutil.which(f"sipvicious_{name}")
        if found is None:
            pytest.fail(f"sipvicious_{name} is not installed (the test group has sipvicious)")
        return found
    return str(path)


async def _run(name: str, *args: str, cwd: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        _tool(name),
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        out, _ = await process.communicate()
    return out.decode("utf-8", "replace")


class _ToyPbx(asyncio.DatagramProtocol):
    """A UDP SIP responder: 200 to OPTIONS, 401 to extension 101, 404 to the others."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        lines = data.decode("utf-8", "replace").split("\r\n")
        method = lines[0].split(" ", 1)[0]
        copied = [
            line
            for line in lines[1:]
            if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")
        ]
        to = next((line for line in copied if line.lower().startswith("to:")), "")
        user = to.partition("sip:")[2].partition("@")[0]
        status, extra = "200 OK", []
        if method in ("REGISTER", "INVITE"):
            if user == EXTENSION:
                status = "401 Unauthorized"
                extra = ['WWW-Authenticate: Digest realm="toy", nonce="0123456789abcdef"']
            else:
                status = "404 Not Found"
        response = [f"SIP/2.0 {status}", *copied, "User-Agent: toy-pbx", *extra]
        self.transport.sendto(
            ("\r\n".join([*response, "Content-Length: 0", "", ""])).encode(), addr
        )


def _found_nothing(output: str) -> bool:
    return "found nothing" in output and "+=====" not in output


async def test_sipvicious_finds_nothing_on_the_bridge_and_finds_a_udp_responder(
    bridge: Any, tmp_path: Path
) -> None:
    harness: Harness = await bridge()
    ports = [harness.running.sip_port, harness.running.https_port]
    loop = asyncio.get_running_loop()
    toy_port = free_port()
    transport, _ = await loop.create_datagram_endpoint(_ToyPbx, local_addr=("127.0.0.1", toy_port))
    try:
        bridge_ports = ",".join(str(p) for p in ports)
        war = ("-e100-105", "-m", "REGISTER")
        commands = [
            ("svmap", "127.0.0.1", "-p", bridge_ports),
            ("svmap", "127.0.0.1", "-p", bridge_ports, "-m", "INVITE"),
            *(("svwar", *war, "127.0.0.1", "-p", str(p)) for p in ports),
            *(("svcrack", "-u", "alice", "-r100-110", "127.0.0.1", "-p", str(p)) for p in ports),
            ("svmap", "127.0.0.1", "-p", str(toy_port)),
            ("svwar", *war, "127.0.0.1", "-p", str(toy_port)),
        ]
        # each tool binds its own UDP port (by default 5060, where it would find the others)
        runs = [_run(*command, "-P", str(free_port()), cwd=tmp_path) for command in commands]
        outputs = await asyncio.gather(*runs)
    finally:
        transport.close()
    *on_bridge, toy_map, toy_war = outputs
    for output in on_bridge:
        assert _found_nothing(output), output
    assert f"127.0.0.1:{toy_port}" in toy_map and "toy-pbx" in toy_map, toy_map
    assert EXTENSION in toy_war and "reqauth" in toy_war, toy_war
