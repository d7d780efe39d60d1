"""``botrix simulate``: load runs of producers and workers (see simulation.py)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("simulate", help="run a load simulation (work in progress)")
    parser.set_defaults(handler=lambda args: 0)
