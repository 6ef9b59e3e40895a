"""Latency probes in every process of the bridge under test (serve and media workers).

The call benchmark's latency pass starts ``pstn-bridge serve`` with this directory and the
project root on ``PYTHONPATH`` and ``CALL_PROBE_DIR`` set; every Python process of the
bridge (the serve process, and the media workers it starts with ``python -m
bridge.media.worker``, which inherit the environment) then runs this at start-up and
installs :func:`tests.bench.call_probe.install_at_exit`: probes on the per-frame steps and
a dump of what they saw to ``CALL_PROBE_DIR/probe-<pid>.json`` when the process exits
normally. Without ``CALL_PROBE_DIR`` it does nothing.
"""

import os

if os.environ.get("CALL_PROBE_DIR"):
    from tests.bench.call_probe import install_at_exit

    install_at_exit(os.environ["CALL_PROBE_DIR"])
