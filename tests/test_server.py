"""EmbeddedServer lifecycle, resolve_url, connect and redact_url, on real valkey-server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from botrix_toolkit.core.errors import BotrixError, EmbeddedServerError
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.core.settings import botrix_home
from botrix_toolkit.server.connect import resolve_url
from botrix_toolkit.server.embedded import STATE_FILE, EmbeddedServer
from botrix_toolkit.server.ports import free_port, port_is_free


def pid_alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our zombie child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """An EmbeddedServer (not started) in a fresh dir; stopped after the test whatever happened."""
    embedded = EmbeddedServer(data_dir=tmp_path / "data", port=free_port())
    try:
        yield embedded
    finally:
        embedded.stop()


def read_state(server: EmbeddedServer) -> dict:
    return json.loads((server.data_dir / STATE_FILE).read_text())


def test_start_runs_a_server_that_answers_and_records_its_state(server: EmbeddedServer) -> None:
    url = server.start()

    assert url == f"redis://127.0.0.1:{server.requested_port}/0"
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
        info = client.info("server")
    finally:
        client.close()
    state = read_state(server)
    assert state["pid"] == info["process_id"]
    assert state["port"] == server.requested_port
    assert state["version"] == info["valkey_version"]
    assert state["started_at"].endswith("+00:00")
    assert server.url == url
    assert (server.data_dir / "valkey.log").is_file()


def test_status_reports_running_server_then_stopped(server: EmbeddedServer) -> None:
    assert server.status() == {"running": False, "pid": None, "port": None, "url": None,
                               "version": None, "data_dir": str(server.data_dir)}
    url = server.start()
    status = server.status()
    assert status["running"] is True
    assert status["url"] == url
    assert status["port"] == server.requested_port
    assert status["pid"] == read_state(server)["pid"]
    assert status["version"].count(".") == 2
    assert status["data_dir"] == str(server.data_dir)


def test_two_objects_on_one_data_dir_share_one_server(server: EmbeddedServer) -> None:
    url = server.start()
    pid = read_state(server)["pid"]

    other = EmbeddedServer(data_dir=server.data_dir)  # no port: must not start a second one
    assert other.start() == url
    assert other.status()["pid"] == pid
    assert read_state(server)["pid"] == pid


def test_concurrent_starts_in_two_processes_end_with_one_server(server: EmbeddedServer) -> None:
    code = (
        "import sys; from botrix_toolkit.server.embedded import EmbeddedServer; "
        "print(EmbeddedServer(data_dir=sys.argv[1], port=int(sys.argv[2])).start())"
    )
    args = [sys.executable, "-c", code, str(server.data_dir), str(server.requested_port)]
    server.data_dir.mkdir(parents=True)
    processes = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in processes]

    assert [p.returncode for p in processes] == [0, 0]
    assert outputs[0] == outputs[1] == f"redis://127.0.0.1:{server.requested_port}/0"
    assert server.status()["running"] is True


def test_stop_ends_the_process_and_removes_the_state_file(server: EmbeddedServer) -> None:
    server.start()
    pid = read_state(server)["pid"]

    assert server.stop() is True

    assert not pid_alive(pid)
    assert not (server.data_dir / STATE_FILE).exists()
    assert server.url is None
    assert server.status()["running"] is False
    assert server.stop() is False  # stopping twice is harmless


def test_stop_from_another_object_ends_the_server(server: EmbeddedServer) -> None:
    server.start()
    pid = read_state(server)["pid"]

    assert EmbeddedServer(data_dir=server.data_dir).stop() is True

    assert not pid_alive(pid)


def test_stop_without_a_data_dir_is_false(tmp_path: Path) -> None:
    assert EmbeddedServer(data_dir=tmp_path / "never-created").stop() is False


@pytest.mark.parametrize("stale_pid", ["dead", "not-valkey"])
def test_stale_state_file_is_replaced_by_a_new_server(
    server: EmbeddedServer, stale_pid: str
) -> None:
    # "not-valkey": a live pid that belongs to another program (pid reuse)
    pid = dead_pid() if stale_pid == "dead" else os.getpid()
    server.data_dir.mkdir(parents=True)
    (server.data_dir / STATE_FILE).write_text(
        json.dumps({"pid": pid, "port": free_port(), "version": "0", "started_at": "x"})
    )

    url = server.start()

    state = read_state(server)
    assert state["pid"] != pid
    assert state["port"] == server.requested_port
    assert redis.Redis.from_url(url).ping() is True


def test_unreadable_state_file_is_treated_as_stale(server: EmbeddedServer) -> None:
    server.data_dir.mkdir(parents=True)
    (server.data_dir / STATE_FILE).write_text("{not json")

    server.start()

    assert read_state(server)["port"] == server.requested_port


def test_data_survives_stop_and_start(server: EmbeddedServer) -> None:
    client = redis.Redis.from_url(server.start())
    try:
        client.set("botrix:test:survivor", "still here")
        client.rpush("botrix:test:list", "a", "b")
    finally:
        client.close()
    server.stop()

    client = redis.Redis.from_url(server.start())
    try:
        assert client.get("botrix:test:survivor") == b"still here"
        assert client.lrange("botrix:test:list", 0, -1) == [b"a", b"b"]
    finally:
        client.close()
    assert (server.data_dir / "appendonlydir").is_dir()


def test_busy_port_fails_with_the_port_and_log_tail(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        embedded = EmbeddedServer(data_dir=tmp_path, port=port)

        with pytest.raises(EmbeddedServerError) as raised:
            embedded.start()

    message = str(raised.value)
    assert f"port {port} is in use" in message
    assert "Address already in use" in message  # from the server log tail
    assert isinstance(raised.value, BotrixError)
    assert embedded.status()["running"] is False
    assert not (tmp_path / STATE_FILE).exists()


def test_default_port_is_6390_when_free_otherwise_any_free_port(tmp_path: Path) -> None:
    embedded = EmbeddedServer(data_dir=tmp_path)
    # hold 6390 when we can, so the fallback is what gets tested; if another
    # program holds it already, the fallback is tested all the same
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT must not stop us
    try:
        try:
            holder.bind(("127.0.0.1", 6390))
            holder.listen()
        except OSError:
            pass
        url = embedded.start()
        port = embedded.status()["port"]
        assert port != 6390
        assert url == f"redis://127.0.0.1:{port}/0"
    finally:
        holder.close()
        embedded.stop()


def test_port_is_free_sees_a_listening_socket() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert port_is_free(port) is False
    assert port_is_free(free_port()) is True


def test_default_data_dir_follows_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BOTRIX_HOME", str(tmp_path / "home"))
    assert botrix_home() == tmp_path / "home"
    monkeypatch.delenv("BOTRIX_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert botrix_home() == tmp_path / "xdg" / "botrix"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert botrix_home() == tmp_path / "user" / ".local" / "share" / "botrix"
    assert EmbeddedServer().data_dir == botrix_home()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:secret@host:6379", "redis://:***@host:6379"),
        ("rediss://u:p@ss@h:6380/2?ssl_cert_reqs=none",
         "rediss://u:***@h:6380/2?ssl_cert_reqs=none"),
        ("unix:///tmp/r.sock?db=1&password=secret", "unix:///tmp/r.sock?db=1&password=***"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        ("redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/0"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_hides_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_resolve_url_prefers_the_explicit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTRIX_REDIS_URL", "redis://127.0.0.1:1/0")
    assert resolve_url("redis://127.0.0.1:2/3") == ("redis://127.0.0.1:2/3", False)


def test_resolve_url_honours_botrix_redis_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BOTRIX_HOME", str(tmp_path))
    monkeypatch.setenv("BOTRIX_REDIS_URL", "redis://127.0.0.1:7777/5")

    assert resolve_url() == ("redis://127.0.0.1:7777/5", False)
    assert EmbeddedServer(data_dir=tmp_path).status()["running"] is False  # nothing started


def test_resolve_url_starts_the_embedded_server_without_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BOTRIX_HOME", str(tmp_path))
    monkeypatch.delenv("BOTRIX_REDIS_URL", raising=False)
    try:
        url, embedded = resolve_url()
        assert embedded is True
        assert url == EmbeddedServer(data_dir=tmp_path).status()["url"]
        assert resolve_url() == (url, True)  # found again, not restarted
    finally:
        EmbeddedServer(data_dir=tmp_path).stop()


def test_connect_returns_a_working_queue_service(embedded_server: EmbeddedServer) -> None:
    from botrix_toolkit.server.connect import connect

    url = embedded_server.url
    service = connect(url, prefix="test:connect:jobs")
    try:
        assert service.health() is True
        assert service.keys.prefix == "test:connect:jobs"
    finally:
        service.close()
