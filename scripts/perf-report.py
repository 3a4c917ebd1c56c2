#!/usr/bin/env python3
"""Measures iamd and writes the README's performance tables to target/perf-report.md.

    python3 scripts/perf-report.py            # everything, about 10 minutes on 2 cores
    python3 scripts/perf-report.py --quick    # shorter runs, for checking the script

What it runs, on an otherwise idle machine:
- `cargo bench --bench engine` and `--bench sidecar`: in-process decision latency, and at
  100,000 principals with 10,000 policies the reload time, start-up time and memory;
- a release `iamd serve` (sample bundle, audit log on) and `iamd bench` against it at
  concurrency 1 and 16: loopback gRPC throughput, latency percentiles, server CPU per decision
  and memory; and the sidecar's own start-up time.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IAMD = ROOT / "target" / "release" / "iamd"


def run(*command, env=None, capture=False):
    """Runs `command`; with `capture`, returns its standard output and error."""
    print("+", " ".join(command), file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stderr or ''}")
    return result.stdout or "", result.stderr or ""


def criterion_median_ns(name):
    # criterion keeps a group's benchmarks under GROUP/NAME, and a lone benchmark under its
    # name with `/` replaced.
    base = ROOT / "target" / "criterion"
    for directory in (base / name, base / name.replace("/", "_")):
        estimates = directory / "new" / "estimates.json"
        if estimates.exists():
            return json.loads(estimates.read_text())["median"]["point_estimate"]
    raise SystemExit(f"criterion wrote no estimates for `{name}` under {base}")


def microseconds(ns):
    return f"{ns / 1000:.2f} µs" if ns < 100_000 else f"{ns / 1000:.0f} µs"


def in_process(quick):
    seconds = "2" if quick else "5"
    run("cargo", "bench", "--locked", "--bench", "engine", "--", "--measurement-time", seconds)
    out, err = run("cargo", "bench", "--locked", "--bench", "sidecar", "--", "--measurement-time", seconds,
                   capture=True)
    scale = out + err
    rows = [
        ("decision, principal with 3 small policies", "≤ 1 µs", "decide/a_three_small_policies"),
        ("decision, 10 managed policies of ~6 KB + 3 SCP levels + boundary", "≤ 3 µs",
         "decide/b_ten_managed_3_scp_levels_boundary"),
        ("the same with explanation", "—", "explain/b_ten_managed_3_scp_levels_boundary"),
        ("decision, 10 policies × 10 wildcard-and-condition statements, none matching", "—",
         "decide/c_10_policies_of_10_wildcard_condition_statements"),
        ("compile 10,000 policies (3 statements each)", "≤ 1 s", "compile/10000_policies"),
        ("sidecar decision at 100,000 principals, the same principal", "≤ 2 µs",
         "sidecar/decide_100k_principals_10k_policies/same_principal"),
        ("sidecar decision at 100,000 principals, 1,024 principals in turn", "—",
         "sidecar/decide_100k_principals_10k_policies/rotating"),
    ]
    lines = ["| measure | target | measured |", "|---|---|---|"]
    for label, target, name in rows:
        ns = criterion_median_ns(name)
        value = f"{ns / 1e9:.2f} s" if ns > 1e8 else microseconds(ns)
        lines.append(f"| {label} | {target} | {value} |")
    found = re.search(r"reload \(compile \+ re-resolve all\) (\d+) ms", scale)
    if found:
        lines.append(f"| reload at 100,000 principals: compile + re-resolve all + publish | ≤ 1 s | {found[1]} ms |")
    found = re.search(r"ready in (\d+) ms, RSS (\d+) MB", scale)
    if found:
        lines.append(f"| restart at 100,000 principals and 10,000 policies: ready | — | {found[1]} ms |")
        lines.append(f"| restart at 100,000 principals and 10,000 policies: RSS | ≤ 150 MB | {found[2]} MB |")
    return "\n".join(lines)


class Server:
    """A release `iamd serve` with the sample bundle on loopback ports, in a scratch directory."""

    def __init__(self, scratch):
        self.scratch = Path(scratch)
        self.log = open(self.scratch / "server.log", "w+")
        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(IAMD), "serve", "--data", str(self.scratch / "data"),
             "--root-credentials-file", str(self.scratch / "root.env"),
             "--listen", "127.0.0.1:50071", "--admin-listen", "127.0.0.1:50072",
             "--query-listen", "127.0.0.1:50073"],
            stdout=self.log, stderr=subprocess.STDOUT)
        while "iamd is serving" not in (self.scratch / "server.log").read_text():
            if self.process.poll() is not None or time.monotonic() - started > 30:
                raise SystemExit("iamd did not start:\n" + (self.scratch / "server.log").read_text())
            time.sleep(0.005)
        self.ready_ms = (time.monotonic() - started) * 1000
        found = re.search(r"startup_ms=(\d+)", (self.scratch / "server.log").read_text())
        self.startup_ms = int(found[1]) if found else None
        self.env = dict(os.environ, IAMD_ENDPOINT="http://127.0.0.1:50071",
                        IAMD_ADMIN_ENDPOINT="http://127.0.0.1:50072")
        for line in (self.scratch / "root.env").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                self.env[key] = value

    def bench(self, *flags):
        out, _ = run(str(IAMD), "bench", "--server-pid", str(self.process.pid), "--json", *flags,
                     env=self.env, capture=True)
        return json.loads(out)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def loopback(quick):
    seconds = "3" if quick else "10"
    with tempfile.TemporaryDirectory() as scratch:
        server = Server(scratch)
        try:
            # The first run creates the 1,000 users; its figures are not reported.
            server.bench("--duration", "1", "--warmup", "0")
            single = server.bench("--concurrency", "1", "--connections", "1", "--duration", seconds)
            sixteen = server.bench("--concurrency", "16", "--connections", "4", "--duration", seconds)
        finally:
            server.stop()
    lines = [
        "| set-up | target | decisions/s | p50 | p90 | p99 | p99.9 | server CPU per decision | server RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, target, r in [("concurrency 1, 1 connection", "—", single),
                             ("concurrency 16, 4 connections", "≥ 40,000/s, p99 ≤ 1 ms", sixteen)]:
        l = r["latency_us"]
        ms = lambda us: f"{us / 1000:.2f} ms"
        lines.append(
            f"| {label} | {target} | {r['throughput_per_second']:,.0f} | {ms(l['p50'])} | {ms(l['p90'])} | "
            f"{ms(l['p99'])} | {ms(l['p99_9'])} | {r['server_cpu_us_per_decision']:.0f} µs | "
            f"{r['server_rss_mb']:.0f} MB |")
        if r["errors"] or r["wrong_decisions"]:
            raise SystemExit(f"the benchmark saw failures: {r}")
    startup = (f"Start-up with the sample bundle: ready to serve {server.startup_ms} ms after `run` began "
               f"({server.ready_ms:.0f} ms from process spawn to the \"iamd is serving\" log line).")
    return "\n".join(lines), startup


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, for checking the script")
    args = parser.parse_args()
    run("cargo", "build", "--release", "--locked", "--bin", "iamd")
    grpc, startup = loopback(args.quick)
    engine = in_process(args.quick)
    cores = os.cpu_count()
    report = f"""Measured by `python3 scripts/perf-report.py` on {time.strftime('%Y-%m-%d')}, {cores} cores.

In process (`cargo bench --bench engine`, `cargo bench --bench sidecar`; criterion medians):

{engine}

Loopback gRPC (`iamd bench` against a release `iamd serve` with the sample bundle and the audit
log on; 1,000 users, 60% allowed, 25% implicitly and 15% explicitly denied, conditions on the
source address and a principal tag; client and server share the machine's cores):

{grpc}

{startup}
"""
    out = ROOT / "target" / "perf-report.md"
    out.write_text(report)
    print(report)
    print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
