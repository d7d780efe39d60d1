"""botrix-toolkit: the botrix job queue in Python, its frames, figures and dashboard."""

from .errors import (
    BotrixError,
    CorruptJobError,
    EmbeddedServerError,
    InvalidInputError,
    JobNotFoundError,
    ServerConnectionError,
    ServerTimeoutError,
    WrongKeyTypeError,
)
from .keys import DEFAULT_PREFIX, QueueKeys
from .models import Job, JobStatus, Priority
from .queue import QueueService
from .server import connect

__all__ = [
    "DEFAULT_PREFIX",
    "BotrixError",
    "CorruptJobError",
    "EmbeddedServerError",
    "InvalidInputError",
    "Job",
    "JobNotFoundError",
    "JobStatus",
    "Priority",
    "QueueKeys",
    "QueueService",
    "ServerConnectionError",
    "ServerTimeoutError",
    "WrongKeyTypeError",
    "connect",
]
