"""The messages a queue's operations publish, read back exactly, for the tests' assertions."""

from __future__ import annotations

import json
import time
from typing import Any

from botrix_toolkit import QueueService

SENTINEL = b'{"event":"test-sentinel"}'


class EventLog:
    """Messages of the queue's updates channel, read up to a sentinel we publish.

    The sentinel follows every message published before it, so ``drain()``
    returns exactly what the operations published, with no sleeping.
    """

    def __init__(self, queue: QueueService) -> None:
        self.queue = queue
        self.pubsub = queue.subscribe()
        confirmation = self.pubsub.get_message(timeout=10)
        assert confirmation is not None and confirmation["type"] == "subscribe"
        assert confirmation["channel"] == queue.keys.updates.encode()

    def drain(self) -> list[dict[str, Any]]:
        self.queue.redis.publish(self.queue.keys.updates, SENTINEL)
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20  # a guard against hanging, not a speed check
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=1)
            if message is None or message["type"] != "message":
                continue
            if message["data"] == SENTINEL:
                return received
            received.append(json.loads(message["data"]))
        raise AssertionError("the sentinel message never arrived")

    def close(self) -> None:
        self.pubsub.close()
