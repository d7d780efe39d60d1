"""Outages ridden out, refusals not: the reconnect window of core/reconnect.py on real servers.

Each test runs its own embedded server (append-only file, fsync on every
write) in a temporary directory, SIGKILLs it and starts it again on the same
port while an operation is waiting for it. A refused login or permission is
shown to fail at once, and ``botrix worker`` to exit on it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from botrix_toolkit import AccessDeniedError, QueueService, ServerConnectionError
from botrix_toolkit.core.reconnect import RECONNECT_WINDOW_S
from botrix_toolkit.core.scripting import SCRIPT_NAMES, script_source
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.server.embedded import EmbeddedServer
from botrix_toolkit.server.ports import free_port
from tests import waiting
from tests.aof import fsync_always

PREFIX = "outage:jobs"
# The server is down this long: a restart replaying its append-only file.
DOWN_S = 3.0


def sigkill(server: EmbeddedServer, pid: int) -> None:
    """SIGKILL by pid (a busy server does not answer the status probe)."""
    os.kill(pid, signal.SIGKILL)
    waiting.wait_for(lambda: not server.status()["running"], "the killed server to be gone", 30.0)


class Restart(threading.Thread):
    """Starts ``server`` again on its port ``after`` seconds from now."""

    def __init__(self, server: EmbeddedServer, after: float) -> None:
        super().__init__(daemon=True)
        self.server, self.after = server, after
        self.error: BaseException | None = None

    def run(self) -> None:
        time.sleep(self.after)
        try:
            fsync_always(self.server.start())
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


def block_server(url: str, seconds: float) -> threading.Thread:
    """Keeps the server busy in a Lua loop, so commands sent meanwhile wait for their reply."""
    script = ("local t0 = redis.call('TIME') "
              "while true do local t = redis.call('TIME') "
              "if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > tonumber(ARGV[1]) then break end end")

    def run() -> None:
        client = redis.Redis.from_url(url, retry=None, socket_timeout=30)
        try:
            client.eval(script, 0, int(seconds * 1_000_000))
        except redis.RedisError:
            pass  # the server was killed under it
        finally:
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def add_job(q: QueueService) -> Any:
    return q.add_job({"id": "during", "priority": 2, "password": "kept"})


def get_queue_stats(q: QueueService) -> Any:
    return q.get_queue_stats()


def dequeue_job(q: QueueService) -> Any:
    return q.dequeue_job()


def check_after(name: str, q: QueueService, result: Any) -> None:
    """Nothing lost, nothing doubled: three jobs were there, and the one operation's effect."""
    queued = [m.decode() for m in q.redis.zrange(q.keys.queue, 0, -1)]
    if name == "add_job":
        assert result == "during"
        assert sorted(queued) == ["before-0", "before-1", "before-2", "during"]
        assert q.get_job("during").password == "kept"
        assert q.get_job_status("during") == "pending"
    elif name == "get_queue_stats":
        assert result["queue_length"] == 3 and result["processing_count"] == 0
        assert result["high_priority"] == 1
    else:
        assert result is not None and result.id == "before-2"  # the highest priority
        assert sorted(queued) == ["before-0", "before-1"]
        assert q.get_processing_count() == 1
        assert q.get_job_status("before-2") == "running"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("when", ["killed before the call", "killed while the call waits for its reply"])
@pytest.mark.parametrize("operation", [add_job, get_queue_stats, dequeue_job], ids=lambda f: f.__name__)
def test_an_operation_during_a_server_restart_waits_and_succeeds(
    aof_server: EmbeddedServer, operation: Callable[[QueueService], Any], when: str
) -> None:
    url = aof_server.url
    assert url is not None
    q = QueueService.from_url(url, prefix=PREFIX)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = operation(q)
        except BaseException as exc:
            outcome["error"] = exc

    try:
        q.add_jobs({"id": f"before-{i}", "priority": i} for i in range(3))
        pid = aof_server.status()["pid"]
        caller = threading.Thread(target=call, daemon=True)
        if when == "killed before the call":
            sigkill(aof_server, pid)
            restart = Restart(aof_server, DOWN_S)
            restart.start()
            caller.start()
        else:
            blocker = block_server(url, 5.0)
            time.sleep(0.2)  # the loop runs: the call below waits for its reply
            caller.start()
            time.sleep(0.3)
            assert caller.is_alive(), "the call must be waiting for the busy server"
            sigkill(aof_server, pid)
            blocker.join(10)
            restart = Restart(aof_server, DOWN_S)
            restart.start()
        caller.join(60)
        restart.join(60)
        assert restart.error is None, restart.error
        assert not caller.is_alive()
        assert "error" not in outcome, f"{operation.__name__} failed: {outcome.get('error')!r}"
        check_after(operation.__name__, q, outcome["result"])
    finally:
        q.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_server_that_stays_down_fails_the_call_after_the_window() -> None:
    port = free_port()  # nothing listens there
    q = QueueService.from_url(f"redis://:pw-in-url@127.0.0.1:{port}/0", prefix=PREFIX, cluster=False)
    start = time.monotonic()
    with pytest.raises(ServerConnectionError, match=f"127.0.0.1:{port}") as error:
        q.get_queue_stats()
    # The window, and not one window per retry layer of redis-py.
    assert RECONNECT_WINDOW_S - 1 < time.monotonic() - start < 3 * RECONNECT_WINDOW_S
    assert not isinstance(error.value, AccessDeniedError)
    assert "pw-in-url" not in str(error.value)
    q.close()


# -- what is never retried -------------------------------------------------------------------

@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server that requires a password, with a user that may not run scripts."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--requirepass", "right-pass", "--dir", str(tmp_path_factory.mktemp("password"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    admin = redis.Redis(host="127.0.0.1", port=port, password="right-pass")
    try:
        waiting.wait_for(lambda: _answers(admin), "redis-server to answer", 30.0)
        admin.acl_setuser("no-scripts", enabled=True, passwords=["+reader-pass"], keys=["*"],
                          channels=["*"], commands=["+@all", "-@scripting"])
        yield f"127.0.0.1:{port}"
    finally:
        admin.close()
        process.kill()
        process.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("credentials", "reason"), [
    (":wrong-pass@", "invalid username-password pair"),
    ("", "Authentication required"),
    ("no-scripts:reader-pass@", "no permissions"),
])
def test_a_refused_login_or_permission_fails_at_once_never_retried(
    password_server: str, credentials: str, reason: str
) -> None:
    q = QueueService.from_url(f"redis://{credentials}{password_server}/0", prefix=PREFIX)
    for operation in (q.get_queue_stats, q.dequeue_job, lambda: q.add_job({"id": "refused"})):
        if credentials.startswith("no-scripts") and operation == q.get_queue_stats:
            continue  # that user may read: only scripts are refused
        start = time.monotonic()
        with pytest.raises(AccessDeniedError, match=reason) as error:
            operation()
        assert isinstance(error.value, ServerConnectionError) and isinstance(error.value, PermissionError)
        # no back-off at all: far below the reconnect window
        assert time.monotonic() - start < RECONNECT_WINDOW_S / 3
        assert "wrong-pass" not in str(error.value) and "reader-pass" not in str(error.value)
    q.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("credentials", [":wrong-pass@", "no-scripts:reader-pass@"])
def test_botrix_worker_exits_with_one_line_when_the_server_refuses_it(
    password_server: str, credentials: str, tmp_path: Path
) -> None:
    (tmp_path / "handlers_for_refusal.py").write_text("def handle(job):\n    return None\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("BOTRIX_REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "botrix_toolkit.cli", "worker", "handlers_for_refusal:handle",
         "--redis-url", f"redis://{credentials}{password_server}/0", "--prefix", PREFIX],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("botrix: error: ") and password_server in lines[0]
    assert "Traceback" not in done.stderr
    assert "wrong-pass" not in done.stderr + done.stdout and "reader-pass" not in done.stderr + done.stdout


# -- a reply lost after the server ran the script ------------------------------------------------

class ReplyDroppingProxy:
    """A TCP proxy to a real server; once armed, it lets the next command reach the
    server and closes the client's connection instead of passing the reply on."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.dropped = 0
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.armed.is_set():
                    self.armed.clear()
                    self.dropped += 1
                    break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def proxied(redis_url: str, key_prefix: str) -> Iterator[tuple[QueueService, QueueService, ReplyDroppingProxy]]:
    """(service through the proxy, service straight to the server, the proxy)."""
    direct = QueueService.from_url(redis_url, prefix=key_prefix)
    host = direct.redis.get_connection_kwargs()
    proxy = ReplyDroppingProxy(int(host["port"]))
    through = QueueService.from_url(f"redis://127.0.0.1:{proxy.port}/{host.get('db', 0)}",
                                    prefix=key_prefix, cluster=False)
    through.get_queue_length()  # the pooled connection is open before the proxy is armed
    for name in SCRIPT_NAMES:  # loaded: the lost reply is the script's, not NOSCRIPT's
        direct.redis.script_load(script_source(name))
    try:
        yield through, direct, proxy
    finally:
        through.close()
        direct.close()
        proxy.close()


@pytest.mark.timeout(60)
def test_an_add_whose_reply_is_lost_is_sent_again_and_queues_the_job_once(
    proxied: tuple[QueueService, QueueService, ReplyDroppingProxy],
) -> None:
    through, direct, proxy = proxied
    with EventRecorder(direct) as recorder:
        proxy.armed.set()
        assert through.add_job({"id": "sent-twice", "priority": 1}) == "sent-twice"
        assert proxy.dropped == 1
        direct.redis.publish(direct.keys.updates, "sentinel")
        waiting.wait_for(lambda: len(recorder.malformed()) >= 1, "the sentinel", 10.0)
        added = recorder.frame()
    assert direct.redis.zrange(direct.keys.queue, 0, -1) == [b"sent-twice"]
    assert direct.get_job_status("sent-twice") == "pending"
    assert (added["event"] == "job_added").sum() == 2  # the script ran twice: Known limits


@pytest.mark.timeout(60)
def test_a_claim_whose_reply_is_lost_leaves_its_job_for_recovery_never_loses_it(
    proxied: tuple[QueueService, QueueService, ReplyDroppingProxy],
) -> None:
    through, direct, proxy = proxied
    direct.add_jobs([{"id": "claimed-by-lost-call", "priority": 2}, {"id": "claimed-again", "priority": 1}])
    proxy.armed.set()
    job = through.dequeue_job()
    assert proxy.dropped == 1
    assert job is not None and job.id == "claimed-again"
    assert sorted(m.decode() for m in direct.redis.smembers(direct.keys.processing)) == [
        "claimed-again", "claimed-by-lost-call"]
    through.complete_job(job.id)
    assert direct.recover_stalled(0) == ["claimed-by-lost-call"]
    assert direct.get_job_status("claimed-by-lost-call") == "pending"
    assert direct.redis.zrange(direct.keys.queue, 0, -1) == [b"claimed-by-lost-call"]
