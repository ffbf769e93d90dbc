"""Markdown tables from bench/run.sh's result files: python3 bench/report.py RAW.csv MEM.csv

RAW.csv: round,target,test,requests,rps,p50_ms,p99_ms,cpu_s_per_M[,servers_cpu_s_per_M,client_cpu_s_per_M] (one row
per redis-benchmark run).
MEM.csv: target,conns,rss_before_kib,rss_after_kib,kib_per_conn.
Per test and target: median req/s over rounds; the ratio to direct and to twem as the median of the per-round
ratios (both runs of a ratio come from the same round); p50/p99 latency medians; CPU seconds per million requests
of the proxy or nutcracker process, of the redis-servers behind the target and of redis-benchmark (medians). With
predixy and proxy6 (the same cluster): what the whole machine spends per request behind each, and the proxy CPU
at which proxy6 would serve 1.2x predixy's requests on cores that all of them share.
"""
import csv
import os
import statistics
import sys
from collections import defaultdict

TESTS = ["set-P1", "get-P1", "set-P16", "get-P16", "mset-P1"]
LABEL = {"set-P1": "SET -P 1", "get-P1": "GET -P 1", "set-P16": "SET -P 16", "get-P16": "GET -P 16",
         "mset-P1": "MSET (10 keys) -P 1"}
TARGETS = ["direct", "twem", "proxy3", "proxy6", "predixy"]


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def main():
    raw, mem = sys.argv[1], sys.argv[2]
    cell = defaultdict(dict)  # (test, target) -> round -> row
    for row in csv.DictReader(open(raw)):
        cell[(row["test"], row["target"])][row["round"]] = row
    targets = [t for t in TARGETS if any((x, t) in cell for x in TESTS)]
    rounds = sorted({r for v in cell.values() for r in v}, key=int)

    def ratio(test, a, b):
        ra, rb = cell.get((test, a), {}), cell.get((test, b), {})
        vals = []
        for r in ra:
            x, y = num(ra[r]["rps"]), num(rb.get(r, {}).get("rps"))
            if x is not None and y:
                vals.append(x / y)
        return med(vals)

    vs_predixy = "predixy" in targets
    def cpu_of(rows, col):
        return med(num(r.get(col)) for r in rows.values())

    print("| test | target | req/s | × direct | × twem |" + (" × predixy |" if vs_predixy else "") +
          " p50 ms | p99 ms | CPU s / M req | servers | client |")
    print("|---|---|---:|---:|---:|" + ("---:|" if vs_predixy else "") + "---:|---:|---:|---:|---:|")
    for test in TESTS:
        for t in targets:
            rows = cell.get((test, t))
            if not rows:
                continue
            rps = med(num(r["rps"]) for r in rows.values())
            p50 = med(num(r["p50_ms"]) for r in rows.values())
            p99 = med(num(r["p99_ms"]) for r in rows.values())
            cpu = cpu_of(rows, "cpu_s_per_M") if t != "direct" else None
            xd = ratio(test, t, "direct") if t != "direct" else None
            xt = ratio(test, t, "twem") if t != "twem" else None
            xp = f" {fmt(ratio(test, t, 'predixy') if t != 'predixy' else None, '.2f')} |" if vs_predixy else ""
            print(f"| {LABEL[test]} | {t} | {fmt(rps, ',.0f')} | {fmt(xd, '.2f')} | {fmt(xt, '.2f')} |{xp} "
                  f"{fmt(p50, '.3f')} | {fmt(p99, '.3f')} | {fmt(cpu, '.2f')} | "
                  f"{fmt(cpu_of(rows, 'servers_cpu_s_per_M'), '.2f')} | {fmt(cpu_of(rows, 'client_cpu_s_per_M'), '.2f')} |")
    print(f"\n{len(rounds)} interleaved round(s). Ratios are medians of per-round ratios. CPU s / M req: user+system "
          "CPU seconds of the proxy (proxy3, proxy6, predixy) or nutcracker (twem) process per million requests "
          "(/proc/PID/stat); servers: of the redis-servers behind the target; client: of redis-benchmark.")

    if vs_predixy and "proxy6" in targets:
        print("\n| test | all CPU s / M: proxy6 | predixy | proxy6's own | its servers + client | predixy's servers + "
              "client | proxy6 CPU for 1.2× predixy | the same with predixy's servers + client |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for test in TESTS:
            a, b = cell.get((test, "proxy6")), cell.get((test, "predixy"))
            if not a or not b:
                continue
            cols = ("cpu_s_per_M", "servers_cpu_s_per_M", "client_cpu_s_per_M")
            own = cpu_of(a, cols[0])
            rest = [cpu_of(a, c) for c in cols[1:]]
            allb = [cpu_of(b, c) for c in cols]
            if own is None or None in rest or None in allb:
                continue
            restb = sum(allb[1:])
            print(f"| {LABEL[test]} | {own + sum(rest):.2f} | {sum(allb):.2f} | {own:.2f} | {sum(rest):.2f} | "
                  f"{restb:.2f} | {sum(allb) / 1.2 - sum(rest):.2f} | {sum(allb) / 1.2 - restb:.2f} |")
        print("\nAll of it shares the same cores: while they are busy, requests per second follow 1 / (all CPU per "
              "request). The last two columns are what proxy6 itself could spend to serve 1.2× predixy's requests: "
              "(all of predixy's) / 1.2 − (the servers' and the client's), with proxy6's or with predixy's.")

    if os.path.exists(mem) and os.path.getsize(mem) > 0:
        rows = list(csv.DictReader(open(mem)))
        if rows:
            print("\n| idle connections held | before idling | target | RSS before (KiB) | RSS after (KiB) | "
                  "KiB per connection |")
            print("|---:|---|---|---:|---:|---:|")
            for r in rows:
                probe = {"ping": "one PING", "get16": "16 GETs of 1 KiB"}.get(r.get("probe", "ping"), r["probe"])
                print(f"| {r['conns']} | {probe} | {r['target']} | {r['rss_before_kib']} | {r['rss_after_kib']} | "
                      f"{r['kib_per_conn']} |")
            print("\nVmRSS of the server process (/proc/PID/status) fresh and 2 s after the connections are open; "
                  "each connection sent one PING, or pipelined 16 GETs of a 1 KiB value, and then stayed idle (the "
                  "second probe runs after the first on the same process, and counts from its fresh RSS).")


if __name__ == "__main__":
    main()
