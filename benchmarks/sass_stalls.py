"""Where a kernel's warps stall, instruction by instruction, from Nsight Compute's stall
sampling (profile_device.sh with SASS=1 writes the CSV this reads).

    ncu --section SourceCounters -o prof ...; ncu -i prof.ncu-rep --page source --csv --print-source sass > k.csv
    python benchmarks/sass_stalls.py k.csv [--top 30]

Prints the share of all samples per stall reason, then the instructions with the most
samples (index in the listing, executions, share, main reasons). Samples are coarse: one
launch of ~13 µs gives ~1500 of them.
"""

from __future__ import annotations

import argparse
import csv


def read_rows(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the per-instruction rows of ncu's source-page CSV (the first line names
    the kernel)."""
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    header = next(line for line in lines if line and line[0] == "Address")
    start = lines.index(header) + 1
    return header, [dict(zip(header, line)) for line in lines[start:] if len(line) == len(header)]


def number(text: str) -> float:
    return float(text.replace(",", "")) if text not in ("", "-") else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("csv")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    header, rows = read_rows(args.csv)
    reasons = [h for h in header if h.startswith("stall_") and "(Not Issued)" not in h]
    samples = "Warp Stall Sampling (All Samples)"
    total = sum(number(r[samples]) for r in rows)
    if total == 0:
        raise SystemExit(f"{args.csv}: no stall samples (was it profiled with --section SourceCounters?)")
    by_reason = {h: sum(number(r[h]) for r in rows) for h in reasons}
    print(f"{len(rows)} instructions, {total:.0f} samples")
    print("by reason: " + ", ".join(f"{h[6:]} {100 * v / total:.1f}%"
                                    for h, v in sorted(by_reason.items(), key=lambda kv: -kv[1]) if v))
    ranked = sorted(range(len(rows)), key=lambda i: -number(rows[i][samples]))
    for i in ranked[:args.top]:
        r = rows[i]
        main_reasons = sorted(((number(r[h]), h[6:]) for h in reasons), reverse=True)[:3]
        detail = " ".join(f"{name} {100 * v / total:.1f}" for v, name in main_reasons if v)
        print(f"{i:5d} x{r['Instructions Executed']:>7s} {100 * number(r[samples]) / total:5.1f}%  "
              f"{r['Source'][:64]:64s} {detail}")


if __name__ == "__main__":
    main()
