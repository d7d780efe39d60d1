"""A worker that only claims and completes jobs starts without pandas, pyarrow, plotly or streamlit.

Checked in a fresh interpreter: this test process has long imported them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import delete_keys_with_prefix

HEAVY = ("pandas", "pyarrow", "plotly", "streamlit")

WORKER_LIKE = textwrap.dedent("""
    import json, sys
    from botrix_toolkit import QueueService, Worker

    url, prefix = sys.argv[1], sys.argv[2]
    q = QueueService.from_url(url, prefix=prefix)
    q.add_job({"id": "light", "priority": 1})
    job = q.dequeue_job()
    q.complete_job(job.id)
    stats = Worker(q, lambda job: None, concurrency=1).run(until_empty=True)
    heavy = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[3:]))
    print(json.dumps({"job": job.id, "status": q.get_job_status("light"), "heavy": heavy,
                      "worker": Worker.__module__}))
""")


def test_queue_operations_and_worker_import_no_frame_libraries(redis_url: str, key_prefix: str) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", WORKER_LIKE, redis_url, key_prefix, *HEAVY],
            capture_output=True, text=True, timeout=120, check=False,
        )
    finally:
        delete_keys_with_prefix(redis_url, key_prefix)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["job"] == "light" and report["status"] == "completed", "dequeue_job really ran"
    assert report["worker"] == "botrix_toolkit.core.worker"
    assert report["heavy"] == [], f"imported by the queue operations: {report['heavy']}"
