"""What the call layer may use of a call's media, wherever it runs.

Theory of operation: :class:`~bridge.media.pipeline.CallMedia` (media in the signaling
process, ``[media] workers = 0``) and :class:`~bridge.media.remote.RemoteCallMedia`
(media in a worker process) both satisfy :class:`CallMediaInterface`, and their ports
:class:`BrowserPort` and :class:`GatewayPort` (which are the trunk package's
``MediaPort``). The call layer is typed against these protocols only, so it does not
know, and must not care, where the media of a call runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sip_gateway.media.events import MediaStats
    from sip_gateway.sdp import Fingerprint, IceParameters, MediaConfig

    from ._srtp_path import WebRtcLegStats
    from .events import MediaMode
    from .pipeline import MediaCounters, MediaEventSink
    from .webrtc_leg import DtlsFacts

__all__ = ["BrowserPort", "CallMediaInterface", "GatewayPort"]


class _Fingerprinted(Protocol):
    @property
    def fingerprints(self) -> tuple[Fingerprint, ...]:
        """Our DTLS certificate's fingerprints, sha-256 first."""
        ...


class BrowserPort(Protocol):
    """A browser leg's media port (the trunk ``MediaPort`` and ``IcePort`` protocols)."""

    @property
    def leg(self) -> _Fingerprinted:
        """The leg's signaling-visible facts."""
        ...

    @property
    def config(self) -> MediaConfig | None:
        """The config applied last."""
        ...

    @property
    def local_address(self) -> tuple[str, int]:
        """The default candidate's address."""
        ...

    @property
    def local_ice(self) -> IceParameters:
        """Our ICE credentials and candidates."""
        ...

    def apply(self, config: MediaConfig) -> None:
        """Start ICE and DTLS, or update the codecs."""

    def close(self) -> None:
        """Stop the connect attempt."""


class GatewayPort(Protocol):
    """The gateway leg's media port (the trunk ``MediaPort`` protocol, plus its config)."""

    @property
    def config(self) -> MediaConfig | None:
        """The configuration in force, None before the first :meth:`apply`."""
        ...

    @property
    def local_address(self) -> tuple[str, int]:
        """Our RTP address and port."""
        ...

    def apply(self, config: MediaConfig) -> None:
        """Start or update media."""

    def close(self) -> None:
        """Stop media and drop the keys."""


P = TypeVar("P", bound=BrowserPort)


class CallMediaInterface(Protocol[P]):
    """Both media legs of one call, as the call layer sees them."""

    on_event: MediaEventSink | None
    mode: MediaMode | None
    webrtc_codec: str | None
    gateway_codec: str | None

    async def open(self) -> None:
        """Bind the gateway leg's sockets."""

    async def new_webrtc_port(self, *, controlling: bool) -> P:
        """Gather candidates for one browser leg."""
        ...

    async def choose_webrtc(self, port: P) -> None:
        """The browser leg that answered; the others close."""

    @property
    def webrtc_port(self) -> P | None:
        """The browser leg in use."""
        ...

    @property
    def gateway_port(self) -> GatewayPort:
        """The gateway leg's port."""
        ...

    def gateway_config_applied(self, config: MediaConfig) -> None:
        """Note the gateway leg's codec."""

    def send_digit_to_gateway(self, digit: str, duration_ms: int = 100, *, via: str) -> None:
        """Send a browser's digit to the carrier."""

    def stats(self) -> MediaCounters:
        """The pipeline's counters."""
        ...

    def leg_stats(self) -> tuple[WebRtcLegStats | None, MediaStats | None]:
        """Both legs' counters."""
        ...

    def webrtc_facts(self) -> DtlsFacts | None:
        """The browser leg's DTLS facts."""
        ...

    async def aclose(self) -> None:
        """Close both legs."""
