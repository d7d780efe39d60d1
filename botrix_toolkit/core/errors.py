"""The toolkit's exceptions: one root, each also the built-in a caller would catch."""

from __future__ import annotations


class BotrixError(Exception):
    """Root of every error the toolkit raises on purpose."""


class InvalidInputError(BotrixError, ValueError):
    """An argument is wrong: empty id, unknown status, bad priority, bad job field."""


class JobStateError(InvalidInputError):
    """The job is not in a state that allows the operation (failing a job no worker holds)."""


class JobNotFoundError(BotrixError, LookupError):
    """No job, status or result is stored under that id."""


class CorruptJobError(BotrixError, ValueError):
    """Data found in Redis is not a job the Go service could decode."""


class WrongKeyTypeError(BotrixError, TypeError):
    """A key of the queue holds another Redis type than the queue expects."""


class ServerConnectionError(BotrixError, ConnectionError):
    """The server could not be reached, or the connection dropped."""


class ServerTimeoutError(ServerConnectionError, TimeoutError):
    """The server did not answer within the configured timeout."""


class SlotMovingError(ServerConnectionError):
    """On a Redis Cluster, the queue's keys are being moved to another node: nothing was changed, retry shortly."""


class MissingKeyError(BotrixError, KeyError):
    """A mapping given to the toolkit lacks a key it needs (a stats dict without ``queue_length``)."""


class OperationError(BotrixError, RuntimeError):
    """A step the toolkit runs itself did not finish as it must.

    A measurement process that did not start or made no progress, a rollup
    batch taken out of order, a compaction that wrote fewer rows than it read.
    """


class EmbeddedServerError(BotrixError, RuntimeError):
    """The embedded Valkey server could not be started or found."""


class ScriptAssemblyError(BotrixError, RuntimeError):
    """A Lua script of the package includes a helper the prelude does not define, or one twice."""


class AccessDeniedError(ServerConnectionError, PermissionError):
    """The server refused us: wrong or missing password, untrusted certificate, no permission (ACL NOPERM).

    Retrying does not mend it: a Worker stops and the CLI exits at once. Also a
    ServerConnectionError, as a refused login was before it had its own class.
    """
