#!/usr/bin/env python3
# Usage: scripts/bench_cpu_split.py target/release/examples/bench_ingest \
#            --collector target/release/nodeproof-collector [bench_ingest arguments]
# (docs/benchmarks.md, "PostgreSQL: one and two collectors").
# Runs one bench_ingest command and samples per-process CPU (utime+stime from /proc) every
# 0.1 s. Reports, for the window in which collector processes are alive (the ingest phase),
# the CPU seconds of postgres processes, of the collectors, of the bench client, and of the
# whole machine (/proc/stat, which includes other users' load).
import os, subprocess, sys, time
HZ = os.sysconf("SC_CLK_TCK")
def procs():
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            with open(f"/proc/{p}/stat") as f: s = f.read()
        except OSError: continue
        comm = s[s.index("(")+1:s.rindex(")")]
        rest = s[s.rindex(")")+2:].split()
        out[int(p)] = (comm, (int(rest[11]) + int(rest[12])) / HZ)
    return out
def machine():
    with open("/proc/stat") as f: v = list(map(int, f.readline().split()[1:]))
    idle = v[3] + v[4]
    return (sum(v) - idle) / HZ, sum(v) / HZ
cmd = sys.argv[1:]
child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
first = last = None
seen = {}   # pid -> (comm, cpu at first sight in window, latest cpu)
while child.poll() is None:
    ps = procs(); now = time.monotonic(); m = machine()
    alive = any(c.startswith("nodeproof-colle") for c, _ in ps.values())
    if alive:
        if first is None: first = (now, m)
        last = (now, m)
        for pid, (comm, cpu) in ps.items():
            if pid in seen: seen[pid] = (comm, seen[pid][1], cpu)
            else: seen[pid] = (comm, cpu, cpu)
    time.sleep(0.1)
print(child.stdout.read().strip().splitlines()[-1])
wall = last[0] - first[0]
def cpu(pred): return sum(l - f for c, f, l in seen.values() if pred(c))
pg = cpu(lambda c: c.startswith("postgres"))
col = cpu(lambda c: c.startswith("nodeproof-colle"))
cli = cpu(lambda c: c.startswith("bench_ingest"))
busy = last[1][0] - first[1][0]
print(f"ingest window {wall:.1f} s: postgres {pg:.1f} cpu-s ({pg/wall:.2f} cores), collectors {col:.1f} cpu-s ({col/wall:.2f} cores), client {cli:.1f} cpu-s ({cli/wall:.2f} cores), whole machine busy {busy/wall:.2f} of 2 cores")
