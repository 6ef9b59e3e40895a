"""Errors of the sans-IO media core.

Hierarchy::

    MediaError                    base of every error raised by sip_gateway.media
    +-- LocalMediaError           we were asked to do something the media layer refuses
    |   |                         (also a ValueError: a bad argument, a bug, not a peer)
    |   +-- UnsupportedCodecError      a codec name this package cannot encode or decode
    +-- RemoteMediaError          the peer sent something we drop; ``reason`` names the counter
        +-- MalformedPacketError       bytes that are not valid RTP or RTCP ("malformed")

Media never answers an error on the wire: a bad datagram is dropped and counted, and
the call goes on. So the "wire meaning" every remote error carries is ``reason``, the
drop-counter label the session adds it to (``"malformed"``, and in the session layer
``"auth_failed"``, ``"replayed"``, ``"wrong_ssrc"`` ...). Messages describe the
problem in a few words and never contain payload bytes or key material.
"""

from __future__ import annotations

__all__ = [
    "LocalMediaError",
    "MalformedPacketError",
    "MediaError",
    "RemoteMediaError",
    "UnsupportedCodecError",
]


class MediaError(Exception):
    """Base class of the media core's errors.

    Attributes:
        reason: a short, stable label for counters and logs (``"malformed"`` ...).
    """

    default_reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason


class LocalMediaError(MediaError, ValueError):
    """Raised when the local side asks for something invalid (a bad digit, a bad size)."""

    default_reason = "local"


class UnsupportedCodecError(LocalMediaError):
    """Raised for a codec name this package does not implement."""

    default_reason = "unsupported_codec"


class RemoteMediaError(MediaError):
    """Raised when the peer sent something the media layer drops."""

    default_reason = "remote"


class MalformedPacketError(RemoteMediaError):
    """Raised when bytes are not a valid RTP or RTCP packet (counted as ``malformed``)."""

    default_reason = "malformed"
