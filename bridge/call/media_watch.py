"""The media watchdog: hang up an answered call whose carrier side sent no RTP for a while.

Theory of operation: a carrier that crashed, lost its network or dropped its signaling
connection leaves the call up with nobody on the line; a production bridge frees the
trunk channel and writes the record instead of waiting for a session timer or the
browser. :func:`watch_media` runs as one of the call's own tasks (cancelled at its end)
and reads the gateway leg's ``packets_received`` counter once a second: while the call
is answered and the counter has not moved for ``limit`` seconds, the call is hung up
with end reason ``media-timeout`` (BYE both ways). Before the answer nothing is
measured (ringing has no media obligation), nor while the negotiated direction says we
receive nothing (a call on hold: our side ``sendonly`` or ``inactive``); the clock
restarts at each new packet. A
carrier that legitimately suppresses silence still sends RTCP, but only RTP counts here,
so a timeout below a minute or so suits tests, not production (the default is 60 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from .errors import EndReason
from .state import CallPhase

if TYPE_CHECKING:
    from .call import Call

__all__ = ["watch_media"]

log = logging.getLogger("bridge.call")


async def watch_media(call: Call, limit: float, *, interval: float = 1.0) -> None:
    """Hang ``call`` up after ``limit`` seconds of answered time without carrier RTP."""
    step = min(interval, limit / 4)
    last_count = -1
    last_change = time.monotonic()
    while call.end_reason is None:
        await asyncio.sleep(step)
        if call.phase is not CallPhase.ANSWERED or not _expects_media(call):
            last_change = time.monotonic()
            continue
        _webrtc, gateway = call.media.leg_stats()
        count = 0 if gateway is None else gateway.packets_received
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change >= limit:
            log.info("call %s: no carrier RTP for %.0f s; hanging up", call.call_id, limit)
            await call.hangup(EndReason.MEDIA_TIMEOUT)
            return


def _expects_media(call: Call) -> bool:
    """Whether the gateway leg's negotiated direction lets the carrier send to us."""
    config = call.media.gateway_port.config  # opened before the carrier was called
    return config is not None and config.direction not in ("sendonly", "inactive")
