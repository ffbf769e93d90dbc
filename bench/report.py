"""Turns bench/run.sh's raw rows into a markdown table: medians over rounds, ratios as medians of per-round
ratios."""
import csv
import statistics
import sys
from collections import defaultdict

raw, mem = sys.argv[1], sys.argv[2]
rps = defaultdict(dict)   # (test, target) -> {round: rps}
cpu = defaultdict(dict)
for row in csv.DictReader(open(raw), delimiter="\t"):
    key = (row["test"], row["target"])
    rps[key][row["round"]] = float(row["rps"] or 0)
    cpu[key][row["round"]] = float(row["cpu_s_per_M"] or 0)

tests = ["set-P1", "get-P1", "set-P16", "get-P16", "mset-P1"]
targets = [t for t in ["direct", "twem", "proxy3", "proxy6"] if any((x, t) in rps for x in tests)]


def ratio(test, a, b):
    ra, rb = rps.get((test, a), {}), rps.get((test, b), {})
    vals = [ra[r] / rb[r] for r in ra if r in rb and rb[r] > 0]
    return statistics.median(vals) if vals else None


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


print("| test | " + " | ".join(f"{t} req/s" for t in targets) +
      " | proxy3/direct | proxy3/twem | twem/direct | proxy6/twem | CPU s/M proxy3 | CPU s/M twem |")
print("|" + "---|" * (len(targets) + 7))
for test in tests:
    cells = [fmt(statistics.median(rps[(test, t)].values()) if rps.get((test, t)) else None, ",.0f") for t in targets]
    cells += [fmt(ratio(test, "proxy3", "direct"), ".2f"), fmt(ratio(test, "proxy3", "twem"), ".2f"),
              fmt(ratio(test, "twem", "direct"), ".2f"), fmt(ratio(test, "proxy6", "twem"), ".2f")]
    for t in ("proxy3", "twem"):
        c = cpu.get((test, t))
        cells.append(fmt(statistics.median(c.values()) if c else None, ".2f"))
    print(f"| {test} | " + " | ".join(cells) + " |")
rounds = len({r for v in rps.values() for r in v})
print(f"\n{rounds} interleaved round(s); redis-benchmark -c 50 -r 100000 -d 64.")
print("\n| idle connections | RSS before (KiB) | RSS after (KiB) | KiB per connection |\n|---|---|---|---|")
for row in csv.DictReader(open(mem), delimiter="\t"):
    print(f"| {row['target']} | {row['rss_before_kib']} | {row['rss_after_kib']} | {row['kib_per_conn']} |")
