"""The old home of ``Worker``, which now lives in ``botrix_toolkit.core.worker``; kept for one release."""

from __future__ import annotations

import warnings

from botrix_toolkit.core.worker import RETRIES_FIELD, Handler, Worker, WorkerStats

warnings.warn("botrix_toolkit.sim.worker is now botrix_toolkit.core.worker (or: from botrix_toolkit import Worker); "
              "the old module goes in the next release", DeprecationWarning, stacklevel=2)

__all__ = ["RETRIES_FIELD", "Handler", "Worker", "WorkerStats"]
