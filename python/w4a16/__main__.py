"""Command line: ``python -m w4a16 info``."""

from __future__ import annotations

import argparse
import json
import sys

from .info import build_info, format_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m w4a16", description="w4a16: 4-bit weight kernels")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="version, build (CUDA, architectures), GPUs seen, formats")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    args = parser.parse_args(argv)
    if args.command == "info":
        facts = build_info()
        print(json.dumps(facts, indent=2) if args.json else format_info(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
