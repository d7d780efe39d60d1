"""Stop a recorder while messages published before the stop still wait to be read.

The recorder's thread is kept off the GIL (the calling thread spins in Python
with a long switch interval) while another process publishes: at ``stop()``
the messages wait in the socket and in the server's buffer for the
subscriber, as when a busy ``botrix monitor`` is sent SIGTERM.
"""

from __future__ import annotations

import mmap
import subprocess
import sys
import tempfile
import time

from botrix_toolkit.frames.events import EventRecorder

_PUBLISH_THEN_SAY_WHEN = """
import sys, time, redis
url, channel, count, ca, done = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
client = redis.Redis.from_url(url, **({"ssl_ca_certs": ca} if ca else {}))
pipe = client.pipeline(transaction=False)
for i in range(count):
    pipe.publish(channel, b'{"event":"job_added","job_id":"s%d"}' % i)
pipe.execute()
print(time.time())
with open(done, "r+b") as flag:
    flag.write(b"1")
"""


def payloads(count: int) -> list[bytes]:
    """What ``stop_while_starved`` publishes, in order."""
    return [b'{"event":"job_added","job_id":"s%d"}' % i for i in range(count)]


def stop_while_starved(recorder: EventRecorder, url: str, channel: str, count: int, ca_certs: str = "") -> None:
    """Publish ``payloads(count)`` from another process, then stop ``recorder`` before its thread reads them.

    The calling thread spins until the publisher says it is done, reading its
    flag through a shared memory map: a read of memory keeps the GIL, where a
    system call (waiting on the process, reading a pipe) would hand it to the
    recorder's thread.
    """
    with tempfile.NamedTemporaryFile() as done_file:
        done_file.write(b"0")
        done_file.flush()
        done = mmap.mmap(done_file.fileno(), 1)
        publisher = subprocess.Popen(
            [sys.executable, "-c", _PUBLISH_THEN_SAY_WHEN, url, channel, str(count), ca_certs, done_file.name],
            stdout=subprocess.PIPE, text=True)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(60.0)
        try:
            give_up = time.monotonic() + 50.0  # time.monotonic() keeps the GIL
            while done[0] != ord("1") and time.monotonic() < give_up:
                pass
            stopped_at = time.time()
            recorder.stop()
        finally:
            sys.setswitchinterval(interval)
            done.close()
        out, _ = publisher.communicate(timeout=60)
    assert publisher.returncode == 0
    assert float(out) < stopped_at, "the publisher had not finished when stop() was called"
