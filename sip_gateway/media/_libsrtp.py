"""libsrtp's protect/unprotect called directly, without pylibsrtp's per-call wrapper.

Theory of operation: ``pylibsrtp.Session.protect`` and friends are a Python wrapper
around one cffi call each; per packet the wrapper type-checks, allocates an ``int *``
with ``ffi.new``, calls a Python assert helper and slices its buffer. On the media hot
path (every packet of every call, both legs) that wrapper cost about as much as the
cryptography itself. :func:`srtp_call` returns a function that does the same work with
everything prepared once: the session's ``srtp_t``, a 1500-byte work buffer and the
length cell of its own. libsrtp still does every check (authentication, replay
window, key limits); only the Python around it is thinner.

A failure raises :class:`SrtpStatusError` with libsrtp's status code (never packet or
key bytes). Each returned function owns its buffer, so functions of the same session
(protect and protect_rtcp, say) never share one; the returned ``bytes`` are a copy.
Callers guarantee ``len(data) + trailer <= BUFFER_SIZE`` (the function checks it
anyway, so a too-long packet is an error, not an overflow).

Private API of pylibsrtp 1.0: ``pylibsrtp._binding`` (``ffi``, ``lib``) and
``Session._srtp``; pinned ``pylibsrtp>=1.0,<2`` in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

import pylibsrtp
from pylibsrtp._binding import ffi, lib  # type: ignore[import-not-found]

__all__ = [
    "AUTH_FAIL",
    "BUFFER_SIZE",
    "REPLAY_STATUSES",
    "Packet",
    "SrtpStatusError",
    "srtp_call",
]

BUFFER_SIZE: Final = 1500
"""The work buffer, as pylibsrtp's: larger packets are refused."""
AUTH_FAIL: Final = 7
"""``srtp_err_status_auth_fail``."""
REPLAY_STATUSES: Final = frozenset({9, 10, 26})
"""``replay_fail``, ``replay_old`` and ``pkt_idx_old``."""

Packet = bytes | bytearray | memoryview
"""What the returned functions take: any contiguous bytes-like object."""
Operation = Literal["protect", "protect_rtcp", "unprotect", "unprotect_rtcp"]
_FUNCTIONS: Final = {
    "protect": (lib.srtp_protect, pylibsrtp.SRTP_MAX_TRAILER_LEN),
    "protect_rtcp": (lib.srtp_protect_rtcp, pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN),
    "unprotect": (lib.srtp_unprotect, 0),
    "unprotect_rtcp": (lib.srtp_unprotect_rtcp, 0),
}


class SrtpStatusError(pylibsrtp.Error):
    """libsrtp refused a packet (a ``pylibsrtp.Error``, so existing handlers catch it).

    Attributes:
        status: libsrtp's ``srtp_err_status_t`` (0 never: that is success).
    """

    def __init__(self, status: int) -> None:
        message = pylibsrtp.ERRORS[status] if 0 <= status < len(pylibsrtp.ERRORS) else "error"
        super().__init__(message)
        self.status = status


def srtp_call(session: pylibsrtp.Session, operation: Operation) -> Callable[[Packet], bytes]:
    """``session``'s ``operation`` as one function of a packet (see the module docstring).

    Args:
        session: a keyed pylibsrtp session; the returned function keeps it alive.
        operation: which libsrtp call.

    Returns:
        ``process(data) -> bytes``: the protected or unprotected packet. It takes any
        bytes-like object and raises :class:`SrtpStatusError` when libsrtp refuses the
        packet, or when it does not fit the buffer (with its trailer).
    """
    func, trailer = _FUNCTIONS[operation]
    srtp = session._srtp[0]
    cdata = ffi.new("char[]", BUFFER_SIZE)
    buffer = ffi.buffer(cdata)
    length = ffi.new("int *")
    limit = BUFFER_SIZE - trailer

    def process(data: Packet, _session: pylibsrtp.Session = session) -> bytes:
        size = len(data)
        if size > limit:
            raise SrtpStatusError(6)  # srtp_err_status_bad_param-like: "can't process"
        length[0] = size
        buffer[0:size] = data
        status = func(srtp, cdata, length)
        if status:
            raise SrtpStatusError(status)
        result: bytes = buffer[0 : length[0]]
        return result

    return process
