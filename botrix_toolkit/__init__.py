"""botrix-toolkit: the botrix job queue in Python, its frames, figures and dashboard."""

from .errors import (
    BotrixError,
    CorruptJobError,
    EmbeddedServerError,
    InvalidInputError,
    JobNotFoundError,
    ServerConnectionError,
    ServerTimeoutError,
    SlotMovingError,
    WrongKeyTypeError,
)
from .events import EventRecorder
from .groups import QueueGroup
from .history import RecordedEvents
from .keys import DEFAULT_PREFIX, QueueKeys
from .models import Job, JobStatus, Priority
from .queue import QueueService
from .server import connect
from .simulation import run_simulation
from .worker import Worker

__all__ = [
    "DEFAULT_PREFIX",
    "BotrixError",
    "CorruptJobError",
    "EmbeddedServerError",
    "EventRecorder",
    "InvalidInputError",
    "Job",
    "JobNotFoundError",
    "JobStatus",
    "Priority",
    "QueueGroup",
    "QueueKeys",
    "QueueService",
    "RecordedEvents",
    "ServerConnectionError",
    "ServerTimeoutError",
    "SlotMovingError",
    "Worker",
    "WrongKeyTypeError",
    "connect",
    "run_simulation",
]
