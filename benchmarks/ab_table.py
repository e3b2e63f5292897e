"""Summary of ab_times.py lines from several builds and passes (one file, any order).

For every (format, shape, M), in the order first seen: each build's median over its passes
(min..max), and its change against the first build seen.

    python benchmarks/ab_table.py AB_TXT [--markdown]
"""

from __future__ import annotations

import argparse
import collections
import statistics


def read_times(path: str) -> tuple[list[str], list[tuple[str, str, str]], dict]:
    """(builds, rows, {(build, row): [µs, ...]}) from the lines `NAME FORMAT NxK M=m US`."""
    builds: list[str] = []
    rows: list[tuple[str, str, str]] = []
    times: dict = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) != 5 or not words[3].startswith("M="):
                continue  # tracebacks, build messages
            build, row = words[0], (words[1], words[2], words[3][2:])
            if build not in builds:
                builds.append(build)
            if row not in rows:
                rows.append(row)
            times[(build, row)].append(float(words[4]))
    return builds, rows, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--markdown", action="store_true", help="a RESULTS.md table of medians")
    args = parser.parse_args()
    builds, rows, times = read_times(args.path)
    if not builds:
        raise SystemExit(f"ab_table.py: no ab_times.py lines in {args.path}")
    if args.markdown:
        print("| format | N x K | M | " + " | ".join(builds) + " |")
        print("|---|---|---:|" + "---:|" * len(builds))
    else:
        print("  ".join(["format", "NxK", "M", *(f"{b} (min..max)" for b in builds)]))
    for row in rows:
        base = statistics.median(times[(builds[0], row)]) if times[(builds[0], row)] else None
        cells = []
        for build in builds:
            xs = times[(build, row)]
            if not xs:
                cells.append("-")
                continue
            med = statistics.median(xs)
            change = "" if build == builds[0] or base is None else f" ({100 * (med / base - 1):+.1f}%)"
            cells.append(f"{med:.2f}{change}" if args.markdown else f"{med:.2f} ({min(xs):.2f}..{max(xs):.2f}){change}")
        print("| " + " | ".join([*row, *cells]) + " |" if args.markdown else "  ".join([*row, *cells]))


if __name__ == "__main__":
    main()
