#!/usr/bin/env python3
"""Profile media under load: the bench stack (single-node Apache Kafka + release media + one edge, as
bench/common.py's Ours starts it; BENCH_BIN_DIR chooses the binaries) with N publishers of the bench clip,
then `perf record --call-graph dwarf` on media (or the broker/edge) for some seconds, and a `perf report`
summary (the broker is a JVM: its frames are JIT code perf cannot name without a perf map agent). For
finding where CPU goes before changing code; figures for the README come from compare.py.

    python3 bench/profile.py --publishers 20 --seconds 20 [--target media|broker|edge]
"""
import argparse, os, re, subprocess, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Ours, Procs, clip, log, start_publishers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--settle", type=int, default=10)
    ap.add_argument("--frequency", type=int, default=199, help="perf record -F: samples per second [199]")
    ap.add_argument("--target", default="media", choices=["media", "broker", "edge"])
    ap.add_argument("--our-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench" / "profile"))
    a = ap.parse_args()
    out = Path(a.out)
    procs = Procs(out)
    try:
        srv = Ours(procs, env=dict(kv.split("=", 1) for kv in a.our_env))
        log(f"{a.publishers} publishers; settling {a.settle} s")
        start_publishers(procs, a.publishers, srv.rtmp_base, clip())
        time.sleep(a.settle)
        pid = srv.pids()[a.target]
        data = out / "perf.data"
        log(f"perf record on {a.target} (pid {pid}) for {a.seconds} s")
        before = threads(pid)
        subprocess.run(["perf", "record", "--call-graph", "dwarf,16384", "-F", str(a.frequency), "-p", str(pid), "-o", str(data), "--",
                        "sleep", str(a.seconds)], check=True, capture_output=True)
        after = threads(pid)
    finally:
        procs.stop_all()
    # Per thread (grouped by name): CPU and context switches per second over the recording.
    rows = {}
    for tid, (name, cpu, vol, invol) in after.items():
        b = before.get(tid, (name, 0, 0, 0))
        r = rows.setdefault(name, [0, 0.0, 0, 0])
        r[0] += 1
        r[1] += (cpu - b[1]) / a.seconds
        r[2] += (vol - b[2]) / a.seconds
        r[3] += (invol - b[3]) / a.seconds
    table = "threads  name                   cpu%   voluntary cs/s  involuntary cs/s\n" + "".join(
        f"{n:7d}  {name:20s} {100 * cpu:6.2f} {vol:15.0f} {inv:17.0f}\n"
        for name, (n, cpu, vol, inv) in sorted(rows.items(), key=lambda kv: -kv[1][1]))
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--stdio", "--percent-limit", "0.7",
                             "-g", "none", "--sort", "dso,symbol"], capture_output=True, text=True).stdout
    by_dso = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--stdio", "--sort", "dso",
                             "-g", "none"], capture_output=True, text=True).stdout
    # Who calls the hot leaves: the same samples with their callers, folded by symbol (children counted).
    callers = subprocess.run(["perf", "report", "-i", str(data), "--children", "--stdio", "--percent-limit", "3",
                              "-g", "none", "--sort", "symbol"], capture_output=True, text=True).stdout
    (out / "report.txt").write_text(table + "\n" + report + "\n" + by_dso + "\n" + callers)
    print(table)
    print(report)
    print(by_dso)
    print(callers)


def threads(pid):
    """{tid: (name, cpu seconds, voluntary, involuntary context switches)} of a process's threads."""
    tick = os.sysconf("SC_CLK_TCK")
    res = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (t / "stat").read_text()
            status = (t / "status").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        vol = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
        invol = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
        res[t.name] = (name, cpu, vol, invol)
    return res


if __name__ == "__main__":
    main()
