"""Fixtures shared by every test file: real servers, clients and per-test key prefixes.

Every test that asks for ``redis_url`` (directly or through ``redis_client``
or ``queue``) runs once per server: the embedded Valkey, plus each URL in
``BOTRIX_TEST_REDIS_URLS`` (comma separated), e.g. a real Redis 7 in CI. A
listed URL that cannot be reached makes its tests fail, never skip.

The suite runs in parallel (pytest-xdist, ``-n`` in pyproject.toml). Each
worker process starts its own embedded Valkey; on a listed server, shared by
every worker, each worker uses a database of its own (``worker_database``), so
a test that counts keys or kills its clients sees only its worker's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import pytest
import redis

from botrix_toolkit.core.cleanup import delete_keys_under
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.server.embedded import EmbeddedServer
from botrix_toolkit.server.ports import free_port
from tests.aof import fsync_always

if TYPE_CHECKING:
    from botrix_toolkit.core.queue import QueueService
    from tests.event_log import EventLog

EMBEDDED = "embedded"
TEST_URLS_ENV = "BOTRIX_TEST_REDIS_URLS"


def _external_urls() -> list[str]:
    return [url.strip() for url in os.environ.get(TEST_URLS_ENV, "").split(",") if url.strip()]


def worker_database() -> int:
    """This pytest-xdist worker's database on a shared server: 0 for ``gw0`` (or no xdist), 1 for ``gw1``..."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw"))


def _on_worker_database(url: str) -> str:
    """``url`` (``redis://`` or ``rediss://``, whose path is the database number) moved on by this worker's number."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise pytest.UsageError(f"{TEST_URLS_ENV}: give redis:// or rediss:// URLs, not {redact_url(url)}")
    given = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{given + worker_database()}"))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto``: two per core, as most tests spend their time waiting on a server or a
    browser; at most 16, the databases a Redis server has by default (one per worker, ``worker_database``)."""
    return min(2 * (os.cpu_count() or 1), 16)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow first, the rest in their usual order, and the browser tests spread evenly through it all.

    Slow first: the parallel run then ends on a few short tests rather than
    waiting on a long one started last. Browser tests apart: each drives a
    dashboard in Chromium, and several at once among the slow tests starved the
    page of CPU for longer than a click may wait (seen in CI).
    """
    browser = [item for item in items if item.get_closest_marker("browser")]
    ordered = sorted((item for item in items if not item.get_closest_marker("browser")),
                     key=lambda item: item.get_closest_marker("slow") is None)
    step = len(ordered) // (len(browser) + 1)
    for number, test in enumerate(browser, start=1):
        ordered.insert(number * step + number - 1, test)
    items[:] = ordered


@functools.cache
def _server_id(url: str) -> str:
    """A readable test id for ``url``: ``redis-7.0.15``, ``valkey-8.1.1``..."""
    if url == EMBEDDED:
        return "valkey-embedded"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            info = client.info("server")
        finally:
            client.close()
    except redis.RedisError:
        # the fixture will fail these tests with the connection error
        return f"unreachable-{redact_url(url)}"
    if "valkey_version" in info:
        return f"valkey-{info['valkey_version']}"
    return f"{info.get('server_name', 'redis')}-{info.get('redis_version', 'unknown')}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_url" in metafunc.fixturenames:
        targets = [EMBEDDED, *_external_urls()]
        metafunc.parametrize("redis_url", targets, ids=[_server_id(t) for t in targets],
                             indirect=True)


@pytest.fixture(scope="session", autouse=True)
def isolated_botrix_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point BOTRIX_HOME at a temporary dir for the whole session, and unset BOTRIX_REDIS_URL.

    Code under test that falls back to the default embedded server then
    never touches the user's real data dir, and whatever server it starts
    there is stopped at the end (it is detached, so it would outlive pytest).
    """
    home = tmp_path_factory.mktemp("botrix-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BOTRIX_HOME", str(home))
        patch.delenv("BOTRIX_REDIS_URL", raising=False)
        try:
            yield home
        finally:
            EmbeddedServer(data_dir=home).stop()


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The session's embedded Valkey, on a free port in a temporary data dir."""
    server = EmbeddedServer(data_dir=tmp_path_factory.mktemp("valkey"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """URL of the server this test runs against (see the module docstring)."""
    target: str = request.param
    if target == EMBEDDED:
        server: EmbeddedServer = request.getfixturevalue("embedded_server")
        url = server.url
        assert url is not None, "the session's embedded server has no state file"
        return url
    return _on_worker_database(target)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client (bytes responses) on ``redis_url``."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def key_prefix() -> str:
    """A queue prefix no other test uses, so tests never see each other's keys."""
    return f"test:{uuid4().hex[:12]}:jobs"


@pytest.fixture
def queue(redis_url: str, key_prefix: str) -> Iterator[QueueService]:
    """A QueueService under ``key_prefix``; its keys are deleted after the test."""
    from botrix_toolkit.core.queue import QueueService

    service = QueueService.from_url(redis_url, prefix=key_prefix)
    try:
        yield service
    finally:
        service.close()
        delete_keys_with_prefix(redis_url, key_prefix)


@pytest.fixture
def events(queue: QueueService) -> Iterator[EventLog]:
    """What the test's operations on ``queue`` publish, read back with ``drain()``."""
    from tests.event_log import EventLog

    log = EventLog(queue)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """An embedded server of this test alone, append-only file on, fsync on every write."""
    server = EmbeddedServer(data_dir=tmp_path / "aof", port=free_port())
    fsync_always(server.start())
    try:
        yield server
    finally:
        server.stop()


def delete_keys_with_prefix(url: str, prefix: str) -> int:
    """UNLINK every key starting with ``prefix``; return how many were removed."""
    client = redis.Redis.from_url(url)
    try:
        return delete_keys_under(client, prefix, batch_size=500)
    finally:
        client.close()
