"""Which server to use, and a QueueService on it.

An explicit URL wins; else ``$BOTRIX_REDIS_URL``; else the embedded server of
the default data dir, started if it is not running.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.core.server_url import check_server_url
from botrix_toolkit.core.settings import URL_ENV
from botrix_toolkit.server.embedded import EmbeddedServer

logger = logging.getLogger(__name__)


def resolve_url(url: str | None = None) -> tuple[str, bool]:
    """The server URL to use, and whether it is the embedded server.

    ``url`` if given, else ``$BOTRIX_REDIS_URL``, else the embedded server of
    the default data dir (started if it is not running). A URL that cannot
    be used is refused (InvalidInputError, the password replaced) before
    anything prints or connects to it.
    """
    if configured := configured_url(url):
        return configured, False
    return EmbeddedServer().start(), True


def configured_url(url: str | None = None) -> str | None:
    """``url`` if given, else ``$BOTRIX_REDIS_URL``, checked as ``resolve_url`` checks it; None when neither is set."""
    if url:
        return check_server_url(url)
    if env_url := os.environ.get(URL_ENV, "").strip():
        return check_server_url(env_url)
    return None


def connect(url: str | None = None, **kwargs: Any) -> QueueService:
    """A QueueService on ``url`` as resolved by ``resolve_url``; ``kwargs`` go to ``from_url``."""
    resolved, embedded = resolve_url(url)
    logger.info("connecting to %s%s", redact_url(resolved), " (embedded)" if embedded else "")
    return QueueService.from_url(resolved, **kwargs)
