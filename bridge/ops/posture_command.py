"""``pstn-bridge posture HOST:PORT``: probe an endpoint and print the verdict.

Theory of operation: parse the target, run :func:`bridge.ops.posture_probe.observe`, judge
with :func:`bridge.ops.posture.assess` and print either a short text report or the JSON of
the facts and findings. Exit status: 0 when the endpoint meets the policy, 1 when it is
below it (the reasons are listed), 3 when it could not be probed, 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from bridge.ops.posture import Report, assess
from bridge.ops.posture_probe import PostureProbeError, ProbeConfig, observe

__all__ = ["add_posture", "run_posture"]

EXIT_BELOW_POLICY = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def add_posture(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``posture`` sub-command."""
    posture = sub.add_parser(
        "posture",
        help="audit the TLS posture of an endpoint against the project's policy",
        description="Protocol versions, TLS 1.2 suite families, forward secrecy, groups, "
        "certificate chain, key, signature, expiry, host name, OCSP stapling, compression, "
        "renegotiation and (HTTPS) HSTS. Exit 1 when below the policy.",
    )
    posture.add_argument("target", metavar="HOST:PORT")
    posture.add_argument(
        "--starttls", choices=("none",), default="none", help="only direct TLS is supported"
    )
    posture.add_argument("--json", action="store_true", help="print facts and findings as JSON")
    posture.add_argument("--servername", default=None, help="SNI and the name to match")
    posture.add_argument("--ca", type=Path, default=None, help="PEM CA file to verify against")
    posture.add_argument(
        "--service",
        choices=("auto", "https", "tls"),
        default="auto",
        help="https: read HSTS from GET /; auto: when the server picks ALPN http/1.1",
    )
    posture.add_argument("--timeout", type=float, default=10.0, help="seconds per probe")


def run_posture(args: argparse.Namespace) -> int:
    """Run the sub-command; returns the exit status."""
    host, sep, port = str(args.target).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        print(
            f"pstn-bridge: posture target must be HOST:PORT, not {args.target!r}", file=sys.stderr
        )
        return EXIT_USAGE
    cfg = ProbeConfig(
        host=host.strip("[]"),
        port=int(port),
        server_name=args.servername,
        ca_file=args.ca,
        service=args.service,
        timeout=args.timeout,
    )
    try:
        report = assess(observe(cfg), datetime.now(UTC))
    except PostureProbeError as exc:
        print(f"pstn-bridge: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(json.dumps(_as_json(report), indent=2) if args.json else _as_text(report))
    return EXIT_BELOW_POLICY if report.below_policy else 0


def _as_json(report: Report) -> dict[str, object]:
    findings = [{"severity": f.severity, "code": f.code, "text": f.text} for f in report.findings]
    return {"below_policy": report.below_policy, "findings": findings, **report.facts}


def _as_text(report: Report) -> str:
    facts = report.facts
    lines = [f"TLS posture of {facts['target']}"]
    for key in ("protocols", "tls12_suites", "groups"):
        value = facts[key]
        assert isinstance(value, dict)
        shown = ", ".join(f"{k}={_yes(v)}" for k, v in value.items())
        lines.append(f"  {key}: {shown}")
    certificate = facts["certificate"]
    if isinstance(certificate, dict):
        lines += [f"  certificate {k}: {v}" for k, v in certificate.items()]
    for key in ("forward_secrecy", "compression", "secure_renegotiation", "hsts"):
        lines.append(f"  {key}: {facts[key]}")
    lines.append(f"  OCSP stapling: {facts['ocsp_stapling']}")
    lines.append("  probes: " + "; ".join(f"{k}: {v}" for k, v in dict(facts["tools"]).items()))  # type: ignore[call-overload]
    verdict = "BELOW POLICY" if report.below_policy else "meets the policy"
    lines.append(f"verdict: {verdict}")
    lines += [f"  {f.severity}: {f.text} [{f.code}]" for f in report.findings]
    return "\n".join(lines)


def _yes(value: object) -> str:
    if value is None:
        return "untestable"
    if isinstance(value, list | tuple):
        return str(len(value)) if value else "no"
    return "yes" if value else "no"
