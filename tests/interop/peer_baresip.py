"""baresip 1.0 as a PSTN gateway or a carrier calling in (PEERS.md section 4).

One directory per instance holds ``config`` and ``accounts`` (absolute paths only). SIP listens
on UDP/TCP ``sip_port`` and TLS ``sip_port + 1``; media is mandatory SDES-SRTP (``srtp-mand``)
with PCMU/PCMA; the audio source is a WAV tone, the sink a silent ``aubridge``, and ``sndfile``
records both directions into ``rec/`` (``dump-*-dec.wav`` = received audio).

Control is ctrl_tcp: netstring-framed JSON both ways (``<len>:<json>,``). A command carries a
token and gets a ``{"response": true, "token": ...}`` reply; events (``{"event": true, "type":
"CALL_ESTABLISHED", ...}``) arrive unsolicited. :class:`BaresipCtrl` keeps every event it reads
so that waiting for a response never loses one.

Known limits (section 4.5): baresip never verifies certificates and never asks for a client
certificate; there is no catch-all account (one accounts line per number); it hangs up on a
new connection to the Contact, so it cannot send BYE through stunnel to SIPp.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.pki import Pki

from .peers import ManagedPeer, PeerError, managed

__all__ = ["Baresip", "BaresipCtrl", "account_line", "render_config", "start_baresip"]

MAX_NETSTRING = 1 << 20

_CONFIG = """\
poll_method\tepoll
net_interface\t127.0.0.1
sip_listen\t127.0.0.1:{sip_port}
sip_certificate\t{certificate}
sip_cafile\t{cafile}
call_local_timeout\t120
call_max_calls\t4
audio_path\t/usr/share/baresip
audio_player\taubridge,sink-{name}
audio_source\taufile,{wav}
audio_alert\taubridge,alert-{name}
ausrc_srate\t8000
auplay_srate\t8000
ausrc_channels\t1
auplay_channels\t1
ausrc_format\ts16
auplay_format\ts16
auenc_format\ts16
audec_format\ts16
audio_buffer\t20-160
rtp_ports\t{rtp_lo}-{rtp_hi}
rtcp_mux\tno
rtp_timeout\t10
module_path\t/usr/lib/baresip/modules
module\tg711.so
module\tsndfile.so
module\taubridge.so
module\taufile.so
module\tsrtp.so
module_tmp\tuuid.so
module_tmp\taccount.so
module_app\tmenu.so
module_app\tctrl_tcp.so
ctrl_tcp_listen\t127.0.0.1:{ctrl_port}
statmode_default\toff
snd_path\t{rec}
"""


def render_config(
    *,
    name: str,
    sip_port: int,
    ctrl_port: int,
    rtp_ports: tuple[int, int],
    certificate: Path,
    cafile: Path,
    wav: Path,
    rec: Path,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The ``config`` file of PEERS.md 4.1; ``extra`` lines are appended (later lines win)."""
    text = _CONFIG.format(
        name=name,
        sip_port=sip_port,
        ctrl_port=ctrl_port,
        rtp_lo=rtp_ports[0],
        rtp_hi=rtp_ports[1],
        certificate=certificate,
        cafile=cafile,
        wav=wav,
        rec=rec,
    )
    return text + "".join(f"{k}\t{v}\n" for k, v in (extra or {}).items())


def account_line(
    user: str,
    *,
    answermode: str = "auto",
    mediaenc: str = "srtp-mand",
    codecs: str = "PCMU,PCMA",
    params: str = "",
) -> str:
    """One ``accounts`` line: a TLS identity ``sip:USER@127.0.0.1`` that never registers.

    Args:
        user: the user part (a number for a gateway, e.g. "+15551230001").
        answermode: "auto" answers at once, "manual" rings until ``accept``.
        mediaenc: "srtp-mand" (SAVP only), "srtp" (best effort) or "" (plain RTP).
        codecs: ``audio_codecs`` list.
        params: more ``;name=value`` parameters (e.g. ``;auth_pass=secret``).
    """
    enc = f";mediaenc={mediaenc}" if mediaenc else ""
    return (
        f"<sip:{user}@127.0.0.1;transport=tls>;answermode={answermode}{enc}"
        f";audio_codecs={codecs};regint=0{params}"
    )


class BaresipCtrl:
    """An asyncio ctrl_tcp client. baresip serves one control connection at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._token = 0
        self.events: list[dict[str, Any]] = []
        """Every event read so far, oldest first."""
        self._unseen: list[dict[str, Any]] = []
        self._pending: int | None = None

    @classmethod
    async def connect(cls, port: int, *, timeout: float = 5.0) -> BaresipCtrl:  # noqa: ASYNC109 - every wait has a default bound
        """Connect to ``127.0.0.1:port``.

        Raises:
            TimeoutError: not connected within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read(self) -> dict[str, Any]:
        if self._pending is None:  # the length survives a timeout between the two reads
            size = (await self._reader.readuntil(b":"))[:-1]
            if not size.isdigit() or int(size) > MAX_NETSTRING:
                raise PeerError(f"bad netstring length from baresip: {size[:20]!r}")
            self._pending = int(size)
        frame = await self._reader.readexactly(self._pending + 1)
        self._pending = None
        if frame[-1:] != b",":
            raise PeerError("netstring from baresip does not end with ','")
        message: dict[str, Any] = json.loads(frame[:-1])
        if message.get("event"):
            self.events.append(message)
            self._unseen.append(message)
        return message

    async def command(
        self,
        command: str,
        params: str = "",
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - every wait has a default bound
    ) -> dict[str, Any]:
        """Send a menu command (``dial``, ``hangup``, ``accept``, ``sndcode``...), await the reply.

        Returns:
            The response, e.g. ``{"response": true, "ok": true, "data": "...", "token": "1"}``.

        Raises:
            TimeoutError: no reply within ``timeout`` seconds.
        """
        self._token += 1
        token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._writer.write(b"%d:%s," % (len(body), body))
        async with asyncio.timeout(timeout):
            await self._writer.drain()
            while True:
                message = await self._read()
                if message.get("response") and str(message.get("token")) == token:
                    return message

    async def wait_event(
        self,
        etype: str,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - every wait has a default bound
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Return the first not yet consumed event of type ``etype`` (and satisfying ``match``).

        Events read while waiting for other things are kept (in order), so none is missed;
        the returned event is consumed, the others stay available.

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """

        def wanted(m: dict[str, Any]) -> bool:
            return m.get("type") == etype and (match is None or match(m))

        async with asyncio.timeout(timeout):
            while True:
                for i, m in enumerate(self._unseen):
                    if wanted(m):
                        return self._unseen.pop(i)
                await self._read()

    async def close(self) -> None:
        """Close the connection (bounded)."""
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2):
                await self._writer.wait_closed()

    async def __aenter__(self) -> BaresipCtrl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(eq=False, kw_only=True)
class Baresip:
    """A running baresip instance."""

    name: str
    directory: Path
    users: tuple[str, ...]
    sip_port: int
    ctrl_port: int
    rtp_ports: tuple[int, int]
    wav: Path
    peer: ManagedPeer
    _ctrl: BaresipCtrl | None = field(default=None, repr=False)

    @property
    def tls_port(self) -> int:
        """The SIP-TLS port (always ``sip_port + 1``)."""
        return self.sip_port + 1

    @property
    def log(self) -> Path:
        """baresip's console log (with the SIP trace when started with ``sip_trace``)."""
        return self.peer.log

    @property
    def rec_dir(self) -> Path:
        """Where ``sndfile`` writes ``dump-<time>-dec.wav`` / ``-enc.wav``."""
        return self.directory / "rec"

    def uri(self, user: str | None = None) -> str:
        """``sip:USER@127.0.0.1:TLS;transport=tls`` for dialing this instance."""
        return f"sip:{user or self.users[0]}@127.0.0.1:{self.tls_port};transport=tls"

    def recordings(self, kind: str = "dec") -> list[Path]:
        """Recorded WAVs, oldest first: "dec" = received audio, "enc" = sent audio."""
        return sorted(self.rec_dir.glob(f"dump-*-{kind}.wav"))

    async def ctrl(self, *, timeout: float = 5.0) -> BaresipCtrl:  # noqa: ASYNC109 - every wait has a default bound
        """The (single, cached) ctrl_tcp connection to this instance.

        Raises:
            TimeoutError: not connected within ``timeout`` seconds.
        """
        if self._ctrl is None:
            self._ctrl = await BaresipCtrl.connect(self.ctrl_port, timeout=timeout)
        return self._ctrl

    async def aclose(self) -> None:
        """Close the control connection, if any."""
        if self._ctrl is not None:
            await self._ctrl.close()
            self._ctrl = None


def start_baresip(
    stack: contextlib.ExitStack,
    directory: Path,
    *,
    pki: Pki,
    users: Sequence[str],
    sip_port: int,
    ctrl_port: int,
    rtp_ports: tuple[int, int],
    wav: Path,
    accounts: Sequence[str] | None = None,
    cert: str = "server",
    extra_config: Mapping[str, str] | None = None,
    sip_trace: bool = True,
    verbose: bool = False,
    max_s: float = 120,
) -> Baresip:
    """Write ``config`` and ``accounts`` into ``directory`` and start baresip there.

    Args:
        stack: baresip is stopped with SIGTERM when it closes.
        directory: the instance's own (fresh) directory.
        pki: certificates: ``cert``'s combined PEM is the TLS identity, ``ca`` the cafile.
        users: user parts; one default account line each (see :func:`account_line`).
        sip_port: UDP/TCP port; TLS is ``sip_port + 1`` (both must be free).
        ctrl_port: ctrl_tcp port.
        rtp_ports: inclusive range of UDP ports for media.
        wav: 8 kHz mono S16 source file.
        accounts: full account lines instead of the defaults for ``users``.
        cert: which PKI leaf to present ("server", or "rogue").
        extra_config: more config lines (appended).
        sip_trace: ``-s`` (log decrypted SIP, including ``a=crypto``).
        verbose: ``-v`` (shows received DTMF).
        max_s: hard bound on the lifetime.

    Raises:
        PeerError: baresip is missing, or its TLS or control port did not open in time.
    """
    rec = directory / "rec"
    rec.mkdir(parents=True, exist_ok=True)
    (directory / "config").write_text(
        render_config(
            name=directory.name,
            sip_port=sip_port,
            ctrl_port=ctrl_port,
            rtp_ports=rtp_ports,
            certificate=pki.combined(cert),
            cafile=pki.ca,
            wav=wav.resolve(),
            rec=rec.resolve(),
            extra=extra_config,
        )
    )
    lines = list(accounts) if accounts is not None else [account_line(u) for u in users]
    (directory / "accounts").write_text("\n".join(lines) + "\n")
    flags = (["-s"] if sip_trace else []) + (["-v"] if verbose else [])
    peer = stack.enter_context(
        managed(
            ["baresip", "-f", str(directory.resolve()), *flags],
            directory / "baresip.log",
            port=[sip_port + 1, ctrl_port],
            cwd=directory,
            stop_signal=signal.SIGTERM,
            max_s=max_s,
        )
    )
    return Baresip(
        name=directory.name,
        directory=directory,
        users=tuple(users),
        sip_port=sip_port,
        ctrl_port=ctrl_port,
        rtp_ports=rtp_ports,
        wav=wav,
        peer=peer,
    )
