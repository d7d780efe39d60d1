"""Deleting a whole key prefix: what tests and benchmarks leave behind."""

from __future__ import annotations

from botrix_toolkit.core.clients import RedisClient


def delete_keys_under(client: RedisClient, prefix: str, unlink: bool = True, batch_size: int = 10_000) -> int:
    """Delete every key starting with ``prefix`` in batches of SCAN; return how many were removed.

    For a test's or a benchmark's leftovers: SCAN with a glob-escaped prefix,
    so a prefix holding ``*`` or ``[`` deletes only its own keys.
    """
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
    delete = client.unlink if unlink else client.delete
    removed, batch = 0, []
    for key in client.scan_iter(match=pattern, count=batch_size):
        batch.append(key)
        if len(batch) >= batch_size:
            removed += delete(*batch)
            batch.clear()
    if batch:
        removed += delete(*batch)
    return removed
