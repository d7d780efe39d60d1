"""Stop a recorder while messages published before the stop still wait to be read.

The recorder's thread is kept off the GIL (the calling thread spins in Python
with a long switch interval) while another process publishes: at ``stop()``
the messages wait in the socket and in the server's buffer for the
subscriber, as when a busy ``botrix monitor`` is sent SIGTERM.
"""

from __future__ import annotations

import subprocess
import sys
import time

from botrix_toolkit.frames.events import EventRecorder

_PUBLISH_THEN_SAY_WHEN = """
import sys, time, redis
url, channel, count, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = redis.Redis.from_url(url, **({"ssl_ca_certs": ca} if ca else {}))
pipe = client.pipeline(transaction=False)
for i in range(count):
    pipe.publish(channel, b'{"event":"job_added","job_id":"s%d"}' % i)
pipe.execute()
print(time.time())
"""


def payloads(count: int) -> list[bytes]:
    """What ``stop_while_starved`` publishes, in order."""
    return [b'{"event":"job_added","job_id":"s%d"}' % i for i in range(count)]


def stop_while_starved(recorder: EventRecorder, url: str, channel: str, count: int, ca_certs: str = "") -> None:
    """Publish ``payloads(count)`` from another process, then stop ``recorder`` before its thread reads them."""
    publisher = subprocess.Popen([sys.executable, "-c", _PUBLISH_THEN_SAY_WHEN, url, channel, str(count), ca_certs],
                                 stdout=subprocess.PIPE, text=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    try:
        spin_until = time.monotonic() + 5.0  # time.monotonic() keeps the GIL
        while time.monotonic() < spin_until:
            pass
        stopped_at = time.time()
        recorder.stop()
    finally:
        sys.setswitchinterval(interval)
    out, _ = publisher.communicate(timeout=60)
    assert publisher.returncode == 0
    assert float(out) < stopped_at, "the publisher had not finished when stop() was called"
