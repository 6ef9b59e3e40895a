"""A real mosquitto with a TLS listener on loopback, for tests (PEERS.md section 8).

Usage::

    def test_x(mosquitto):                       # fixture: started, stopped at the end
        ...mosquitto.port, mosquitto.ca ...
        async with mosquitto.subscriber("pstn-bridge/#") as sub:
            messages = await sub.collect(lambda seen: len(seen) >= 2, timeout=5)

    with Mosquitto(tmp_path, tls_pki, require_certificate=True,
                   passwords={"bridge": "s3cret"}) as broker:   # other options
        broker.stop(); broker.start()            # same port, same config (outage tests)

The broker runs as root (``user root``: dropping to user ``mosquitto`` could not read the 0600
keys the test PKI writes), without persistence (a restart forgets retained messages, as a
real broker that lost its disk would), on a free port of 127.0.0.1, with the ``server``
certificate of the test PKI (``tests/pki.py``, made by ``sip_gateway.devcerts``): its IP SAN
127.0.0.1 is what clients verify. ``require_certificate`` makes it demand client
certificates from the test CA; ``passwords`` writes a password file (hashed by
``mosquitto_passwd -U``) and refuses anonymous clients. A missing ``mosquitto`` binary fails
the test (PeerError), it never skips. Each run logs to ``mosquitto-N.log`` (connections and
subscriptions included) in the broker's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.interop.peers import ManagedPeer, PeerError, free_port, managed
from tests.pki import Pki

__all__ = ["Mosquitto", "Received", "Subscriber", "mosquitto", "mosquitto_binary"]


def mosquitto_binary() -> str:
    """Absolute path of mosquitto (Debian puts it in /usr/sbin, often not on PATH).

    Raises:
        PeerError: it is not installed.
    """
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    if found is None:
        raise PeerError("mosquitto is not installed (Debian package mosquitto; tests never skip)")
    return found


@dataclass(frozen=True, slots=True)
class Received:
    """One message a subscriber received."""

    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


class Mosquitto:
    """One broker configuration; :meth:`start` and :meth:`stop` may be repeated."""

    def __init__(
        self,
        directory: Path,
        pki: Pki,
        *,
        require_certificate: bool = False,
        passwords: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.directory = directory
        self.pki = pki
        self.port = port or free_port()
        self.require_certificate = require_certificate
        self.runs = 0
        self._stack: ExitStack | None = None
        self.peer: ManagedPeer | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(self._config(passwords))

    def _config(self, passwords: Mapping[str, str] | None) -> str:
        pki = self.pki
        lines = [
            "persistence false",
            "log_dest stderr",
            "log_type all",
            "connection_messages true",
            "user root",
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            f"cafile {pki.ca}",
            f"certfile {pki.crt('server')}",
            f"keyfile {pki.key('server')}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if self.require_certificate else 'false'}",
        ]
        if passwords:
            path = self.directory / "passwords"
            path.write_text("".join(f"{user}:{pw}\n" for user, pw in passwords.items()))
            path.chmod(0o600)
            subprocess.run(
                [shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-U", str(path)],
                check=True,
                capture_output=True,
                timeout=10,
            )
            lines += ["allow_anonymous false", f"password_file {path}"]
        else:
            lines.append("allow_anonymous true")
        return "\n".join(lines) + "\n"

    @property
    def ca(self) -> Path:
        """The CA that the broker's certificate chains to."""
        return self.pki.ca

    @property
    def running(self) -> bool:
        """True while the broker process runs."""
        return self.peer is not None and self.peer.running

    @property
    def log(self) -> Path:
        """The log of the current (or last) run."""
        return self.directory / f"mosquitto-{self.runs}.log"

    def logs(self) -> str:
        """Every run's log, concatenated."""
        return "".join(
            (self.directory / f"mosquitto-{n}.log").read_text(errors="replace")
            for n in range(1, self.runs + 1)
        )

    def start(self) -> None:
        """Start the broker and wait until its port listens (10 s at most).

        Raises:
            PeerError: mosquitto is missing, exited, or did not listen in time.
        """
        assert not self.running, "already running"
        binary = mosquitto_binary()
        self.runs += 1
        stack = ExitStack()
        self.peer = stack.enter_context(
            managed([binary, "-c", str(self.conf)], self.log, port=self.port, max_s=600)
        )
        self._stack = stack

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 10 s)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_context(self, *, ca: str = "ca") -> ssl.SSLContext:
        """A client context trusting ``ca``, with the client certificate when required."""
        return self.pki.client_context(cert="client" if self.require_certificate else None, ca=ca)

    @contextlib.asynccontextmanager
    async def subscriber(
        self, *topics: str, username: str | None = None, password: str | None = None
    ) -> AsyncIterator[Subscriber]:
        """Connect a QoS 1 subscriber to ``topics`` (subscribed once this yields)."""
        client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            tls_context=self.client_context(),
            username=username,
            password=password,
            timeout=5,
        )
        async with client:
            for topic in topics:
                await client.subscribe(topic, qos=1)
            sub = Subscriber(client)
            sub.start()
            try:
                yield sub
            finally:
                await sub.stop()


@dataclass
class Subscriber:
    """Collects every message of one client, in arrival order."""

    client: aiomqtt.Client
    received: list[Received] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task

    async def _pump(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            assert isinstance(payload, bytes | bytearray)
            self.received.append(
                Received(str(message.topic), bytes(payload), message.retain, message.qos)
            )
            self._arrived.set()

    async def collect(
        self,
        done: Callable[[list[Received]], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - a bound, not a cancellation scope
    ) -> list[Received]:
        """Wait until ``done(received)`` holds; returns ``received``.

        Raises:
            AssertionError: ``timeout`` seconds passed first (the message lists what came).
        """
        try:
            async with asyncio.timeout(timeout):
                while not done(self.received):
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            seen = [(m.topic, m.payload[:120]) for m in self.received]
            raise AssertionError(f"not received within {timeout} s; got {seen}") from None
        return self.received

    def on(self, topic: str) -> list[Received]:
        """Messages received on ``topic``."""
        return [m for m in self.received if m.topic == topic]


@pytest.fixture
def mosquitto(tmp_path: Path, tls_pki: Pki) -> Iterator[Mosquitto]:
    """A running broker (anonymous TLS clients, server certificate from the test CA)."""
    with Mosquitto(tmp_path / "mosquitto", tls_pki) as broker:
        yield broker
