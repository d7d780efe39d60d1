"""The toolkit's exceptions (core/errors.py): one root, each also the built-in a caller would catch."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import pytest

import botrix_toolkit
from botrix_toolkit.core import errors
from botrix_toolkit.frames.reply_stream import ReplyStreamError

ERROR_CLASSES = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if cls.__module__ == errors.__name__]
BUILT_INS = (ValueError, LookupError, TypeError, ConnectionError, RuntimeError, KeyError)


def test_every_error_is_a_botrix_error_and_a_built_in_and_exported() -> None:
    assert errors.BotrixError in ERROR_CLASSES and len(ERROR_CLASSES) > 10
    for cls in ERROR_CLASSES:
        assert issubclass(cls, errors.BotrixError), cls
        assert cls is errors.BotrixError or issubclass(cls, BUILT_INS), cls
        assert getattr(botrix_toolkit, cls.__name__) is cls, f"botrix_toolkit does not export {cls.__name__}"


@pytest.mark.parametrize(("error", "built_in"), [(errors.MissingKeyError, KeyError),
                                                 (errors.OperationError, RuntimeError),
                                                 (ReplyStreamError, ValueError)])
def test_the_errors_that_were_bare_built_ins_are_still_caught_as_them(error: type, built_in: type) -> None:
    with pytest.raises(built_in):
        raise error("what went wrong")
    assert issubclass(error, errors.BotrixError)


def test_a_stats_dict_without_a_stat_raises_missing_key_naming_it() -> None:
    from botrix_toolkit.frames.event_frames import stats_frame_from

    with pytest.raises(errors.MissingKeyError, match="queue_length"):
        stats_frame_from({"processing_count": 0}, datetime.now(UTC))
