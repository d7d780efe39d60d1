"""botrix-toolkit: the botrix job queue in Python, its frames, figures and dashboard.

The queue operations, the job model and the errors load with redis-py alone,
so a worker process that only claims and completes jobs starts without pandas,
pyarrow or plotly. Names from the layers above (``EventRecorder``,
``QueueGroup``, ``analysis``, ``plots``...) are imported when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from botrix_toolkit.core.errors import (
    AccessDeniedError,
    BotrixError,
    CorruptJobError,
    EmbeddedServerError,
    InvalidInputError,
    JobNotFoundError,
    JobStateError,
    MissingKeyError,
    OperationError,
    ScriptAssemblyError,
    ServerConnectionError,
    ServerTimeoutError,
    SlotMovingError,
    WrongKeyTypeError,
)
from botrix_toolkit.core.keys import DEFAULT_PREFIX, QueueKeys
from botrix_toolkit.core.models import Job, JobStatus, Priority
from botrix_toolkit.core.queue import QueueService

if TYPE_CHECKING:
    from botrix_toolkit.core.worker import Worker
    from botrix_toolkit.frames import analysis, plots
    from botrix_toolkit.frames.events import EventRecorder
    from botrix_toolkit.frames.groups import QueueGroup
    from botrix_toolkit.frames.history import RecordedEvents
    from botrix_toolkit.server.connect import connect
    from botrix_toolkit.sim.simulation import run_simulation

# name -> (module, attribute or None for the module itself), imported on first use
_LAZY: dict[str, tuple[str, str | None]] = {
    "EventRecorder": ("botrix_toolkit.frames.events", "EventRecorder"),
    "QueueGroup": ("botrix_toolkit.frames.groups", "QueueGroup"),
    "RecordedEvents": ("botrix_toolkit.frames.history", "RecordedEvents"),
    "Worker": ("botrix_toolkit.core.worker", "Worker"),
    "connect": ("botrix_toolkit.server.connect", "connect"),
    "run_simulation": ("botrix_toolkit.sim.simulation", "run_simulation"),
    "analysis": ("botrix_toolkit.frames.analysis", None),
    "plots": ("botrix_toolkit.frames.plots", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'botrix_toolkit' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AccessDeniedError",
    "DEFAULT_PREFIX",
    "BotrixError",
    "CorruptJobError",
    "EmbeddedServerError",
    "EventRecorder",
    "InvalidInputError",
    "Job",
    "JobNotFoundError",
    "JobStateError",
    "MissingKeyError",
    "OperationError",
    "ScriptAssemblyError",
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
    "analysis",
    "connect",
    "plots",
    "run_simulation",
]
