"""The ``pac-models`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pac-models``.

    Subcommands:
        demo: guided upsampling of the Middlebury disparity (same as ``python -m pac_models.demo``).
    """
    parser = argparse.ArgumentParser(prog="pac-models", description="pac-models command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="joint depth upsampling of the bundled Middlebury image",
                          add_help=False)
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    args, unknown = parser.parse_known_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main([*args.rest, *unknown])
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2  # pragma: no cover
