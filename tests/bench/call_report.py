"""The call benchmark's results as text: the final table, a Markdown table, the targets.

Theory of operation: pure functions of the results dict that
:func:`tests.bench.call_bench.run` builds (and writes as JSON); nothing is measured here.
The targets are the ones of the performance issue for a 2-core machine; each is reported
with the measured value, met or not, and by how much it is missed in percent of the
target.
"""

from __future__ import annotations

from typing import Any

__all__ = ["markdown", "report", "targets"]

LABEL = {"transcode": "transcoded Opus<->PCMU", "relay": "relayed PCMU"}


def _p(stats: dict[str, Any] | None, *keys: str) -> str:
    if not stats or not stats.get("n"):
        return "-"
    return "/".join(f"{stats[k]:.1f}" for k in keys)


def _row(mode: str, entry: dict[str, Any]) -> dict[str, str]:
    cpu, bare = entry["cpu"], entry.get("bare")
    ms = cpu["bridge_cpu_ms_per_call_s"]
    ref = bare["cpu_ms_per_call_s"] if bare else None
    client, carrier = cpu["client"], cpu["carrier"]
    latency = (entry.get("latency") or {}).get("latency", {})
    found = entry.get("find_max")
    return {
        "mode": LABEL[mode],
        "calls": str(cpu["calls"]),
        "CPU ms/call-s": f"{ms:.2f}",
        "bare relay": f"{ref:.2f}" if ref else "-",
        "ratio": f"{ms / ref:.2f}x" if ref else "-",
        "lost/late % (browser)": f"{client['lost_pct']:.2f}/{client['late_pct']:.2f}",
        "lost/concealed % (carrier)": (
            f"{carrier['lost'] * 100 / max(1, carrier['packets_received']):.2f}/"
            f"{carrier['concealed_pct'] or 0:.2f}"
        ),
        "added b->g p50/p99/max ms": _p(
            latency.get("browser_to_gateway", {}).get("added"), "p50_ms", "p99_ms", "max_ms"
        ),
        "added g->b p50/p99/max ms": _p(
            latency.get("gateway_to_browser", {}).get("added"), "p50_ms", "p99_ms", "max_ms"
        ),
        "INVITE->trunk p50/p99 ms": _p(cpu["setup"]["invite_to_trunk_invite"], "p50_ms", "p99_ms"),
        "offer->DTLS p50/p99 ms": _p(cpu["setup"]["offer_to_dtls_connected"], "p50_ms", "p99_ms"),
        "max calls": str(found["max_sustained_calls"]) if found else "-",
        "bridge/generator/others cores": (
            f"{cpu['bridge_cpu_cores']:.2f}/{cpu['generator_cpu_cores']:.2f}/"
            f"{cpu.get('other_processes_cpu_cores', 0):.2f}"
        ),
    }


def _signaling_line(sig: dict[str, Any]) -> str:
    lat = sig["setup_latency"]
    return (
        f"signaling (TLS/WSS, media idle, {sig['concurrency']} browsers): "
        f"{sig['setups_per_s']:.1f} set-ups/s ({sig['setups']} in {sig['window_s']:.0f} s), "
        f"set-up latency p50 {lat.get('p50_ms', 0):.1f} ms p99 {lat.get('p99_ms', 0):.1f} ms, "
        f"INVITE->trunk p50/p99 {_p(sig['invite_to_trunk_invite'], 'p50_ms', 'p99_ms')} ms, "
        f"bridge {sig['bridge_cpu_ms_per_setup']} ms CPU per set-up, of which the serve "
        f"process {sig.get('serve_process_cpu_ms_per_setup')} ms "
        f"({sig['bridge_cpu_cores']} cores; load generator {sig.get('generator_cpu_cores')}, "
        f"other processes {sig.get('other_processes_cpu_cores', '-')} cores), "
        f"failures {sig['failures'] or 'none'}"
    )


def _machine(results: dict[str, Any]) -> str:
    m = results["machine"]
    return f"{m['cpus']} CPUs, {m['cpu_model']}, Python {m['python']}, Linux {m['kernel']}"


def _settings(results: dict[str, Any]) -> str:
    cfg = results["config"]
    workers = cfg.get("workers") or "the bridge's default"
    return (
        f"Opus complexity {cfg['complexity']} at {cfg['bitrate']} bit/s, media workers: "
        f"{workers}, {cfg['seconds']:g} s windows"
    )


def markdown(results: dict[str, Any]) -> str:
    """The short Markdown table (README-ready)."""
    rows = [_row(mode, entry) for mode, entry in results["modes"].items()]
    lines = [
        f"Machine: {_machine(results)}; {results['started']}; {_settings(results)}.",
        f"Command: `{results['command']}`",
        "",
    ]
    if rows:
        head = list(rows[0])
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row[k] for k in head) + " |" for row in rows]
        lines.append("")
    if results.get("signaling"):
        lines += [_signaling_line(results["signaling"]), ""]
    lines += ["Targets (issue 7, 2 cores):", ""]
    lines += [f"- {_target_text(t)}" for t in results["targets"]]
    return "\n".join(lines) + "\n"


def report(results: dict[str, Any]) -> str:
    """The table printed at the end (aligned text)."""
    lines = [
        f"call benchmark on {_machine(results)}; {_settings(results)}",
        f"command: {results['command']}",
        "",
    ]
    for mode, entry in results["modes"].items():
        row = _row(mode, entry)
        lines.append(f"  {row.pop('mode')}:")
        lines += [f"    {key:<31}{value}" for key, value in row.items()]
        cpu = entry["cpu"]
        lines.append(
            f"    {'bridge processes, idle':<31}{cpu['bridge_processes']}, "
            f"{cpu['bridge_idle_cpu_ms_per_s']} ms CPU/s; load generator "
            f"{cpu['generator_cpu_cores']} cores; other processes "
            f"{cpu.get('other_processes_cpu_cores', '-')} cores"
        )
        lines += _profile_lines(cpu.get("profile"))
        for step in (entry.get("find_max") or {}).get("steps", []):
            lines.append(f"    find-max {step['calls']:>5} calls: {step['why']}")
    if results.get("signaling"):
        lines += ["", "  " + _signaling_line(results["signaling"])]
        lines += _profile_lines(results["signaling"].get("profile"))
    lines += ["", "  targets:"] + [f"    {_target_text(t)}" for t in results["targets"]]
    return "\n".join(lines)


def _profile_lines(profile: dict[str, Any] | None) -> list[str]:
    lines = []
    for role, prof in (profile or {}).items():
        lines.append(f"    py-spy, {role} processes ({prof['samples']} samples):")
        lines += [f"      self {pct:5.1f}%  {frame}" for frame, pct in prof["self"][:12]]
        lines += [f"      incl {pct:5.1f}%  {frame}" for frame, pct in prof["inclusive"][:15]]
    return lines


def _target_text(t: dict[str, Any]) -> str:
    if t["measured"] is None:
        return f"{t['target']}: not measured ({t.get('note', '')})"
    verdict = "met" if t["met"] else f"NOT met, missed by {t['miss_pct']:.0f}%"
    note = f" ({t['note']})" if t.get("note") else ""
    return f"{t['target']}: {t['measured']:g} {t['unit']}, {verdict}{note}"


def _check(
    target: str, measured: float | None, limit: float, unit: str, *, at_least: bool, note: str = ""
) -> dict[str, Any]:
    if measured is None:
        return {"target": target, "measured": None, "met": None, "miss_pct": None, "note": note}
    met = measured >= limit if at_least else measured <= limit
    miss = (limit - measured) / limit if at_least else (measured - limit) / limit
    return {
        "target": target,
        "measured": round(measured, 2),
        "unit": unit,
        "met": met,
        "miss_pct": None if met else round(miss * 100, 1),
        "note": note,
    }


def _mode_targets(mode: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
    floor, cap, ceiling = (
        (100, 18.0, "transcoded") if mode == "transcode" else (500, 2.6, "relayed")
    )
    cpu = entry["cpu"]
    found = entry.get("find_max")
    out = [
        _check(
            f"{ceiling}: >= {floor} concurrent calls sustained",
            found["max_sustained_calls"] if found else None,
            floor,
            "calls",
            at_least=True,
            note="" if found else "run with --find-max",
        )
    ]
    client = cpu["client"]
    loss = (client["lost_pct"] or 0) + (client["late_pct"] or 0)
    out.append(
        _check(
            f"{ceiling}: late/lost < 0.1% at {cpu['calls']} calls", loss, 0.1, "%", at_least=False
        )
    )
    latency = (entry.get("latency") or {}).get("latency")
    p99 = (
        max(p["added"].get("p99_ms", 0.0) for p in latency.values())
        if latency and all(p["added"].get("n") for p in latency.values())
        else None
    )
    out.append(
        _check(
            f"{ceiling}: p99 added latency < 10 ms at {cpu['calls']} calls",
            p99,
            10.0,
            "ms",
            at_least=False,
            note=""
            if p99 is not None
            else "no probed frames"
            if "latency" in entry
            else "latency pass skipped (--no-latency)",
        )
    )
    bare = entry.get("bare")
    ms = cpu["bridge_cpu_ms_per_call_s"]
    ratio = ms / bare["cpu_ms_per_call_s"] if bare else None
    out.append(_check(f"{ceiling}: CPU <= 1.3x bare relay", ratio, 1.3, "x", at_least=False))
    out.append(_check(f"{ceiling}: CPU <= {cap} ms per call-second", ms, cap, "ms", at_least=False))
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue that this run measured, with the miss in percent."""
    out = []
    for mode, entry in results["modes"].items():
        out += _mode_targets(mode, entry)
    sig = results.get("signaling")
    if sig:
        out.append(
            _check(">= 50 call set-ups/s over TLS", sig["setups_per_s"], 50.0, "/s", at_least=True)
        )
    return out
