"""Operations: the ``pstn-bridge`` command, the ops API, its live stream and the metrics.

Modules: :mod:`~bridge.ops.cli` (the command), :mod:`~bridge.ops.client` (``calls`` and
``call``), :mod:`~bridge.ops.api` (routes), :mod:`~bridge.ops.access` (token, rate limit),
:mod:`~bridge.ops.records` (where records come from), :mod:`~bridge.ops.stream` (SSE),
:mod:`~bridge.ops.metrics` (Prometheus), :mod:`~bridge.ops.openapi` (the document),
:mod:`~bridge.ops.posture_command` (``posture``: probes in :mod:`~bridge.ops.posture_probe`,
the sans-IO verdict in :mod:`~bridge.ops.posture`). Nothing
is imported here, so the command starts without the media stack.
"""

__all__: list[str] = []
