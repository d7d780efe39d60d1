"""Options that several ``botrix`` subcommands share, as argparse parent parsers.

Pass one as ``parents=[...]`` to ``add_parser``: the option is then spelled,
defaulted and explained once for every subcommand that takes it.
"""

from __future__ import annotations

import argparse

from botrix_toolkit.core.keys import DEFAULT_PREFIX


def server_options(fallback: str = "the embedded server") -> argparse.ArgumentParser:
    """``--redis-url``: which server (resolved by ``server.connect.resolve_url``);
    ``fallback`` names the one used when no URL is set, for a command that differs."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--redis-url", default=None,
                        help=f"server URL (default: $BOTRIX_REDIS_URL, else {fallback})")
    return parent


def queue_options(prefix_note: str = "") -> argparse.ArgumentParser:
    """``--redis-url`` and ``--prefix``: which queue; ``prefix_note`` adds what the prefix means to one command."""
    parent = server_options()
    note = f"; {prefix_note}" if prefix_note else ""
    parent.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help=f"queue key prefix (default {DEFAULT_PREFIX}){note}")
    return parent
