"""Every event through stdlib :mod:`logging`: a readable message, the fields in ``extra``.

:class:`LoggingObserver` is an observer like any other: pass it as
``observer=`` (alone or with others through :func:`trio_sagas.observers`).
Each event becomes one log record whose message reads as a sentence
(``"ActFailed process-order/charge: ValueError: card declined"``) and whose
``extra`` holds the event's fields under ``saga_*`` keys, converted to plain
JSON values, so structlog's ``ProcessorFormatter`` or a JSON formatter shows
them as keys without knowing our types.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any, final

import attrs

from ._events import Event
from ._outcome import CancelCause, describe_error
from ._validate import check_int, check_type

_PREFIX = "saga_"

# Fields that are too big or too live for a log line: the whole ignition
# result, outcomes (their values may be anything).
_SKIPPED_FIELDS = frozenset({"result", "outcome"})

# The fields that name what an event is about, in the order tried: the
# message reads "<EventType> <subject>: <detail>".
_SUBJECT_FIELDS = ("scene", "step", "name")

_FAILURE_NAMES = ("Failed", "Cancelled", "TimeoutReached", "Missing")


def plain(value: object) -> Any:
    """*value* as a JSON value: errors and causes as text, enums by value."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, BaseException):
        return describe_error(value)
    if isinstance(value, CancelCause):
        return value.describe()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list, frozenset, set)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return repr(value)


def event_fields(event: Event) -> dict[str, Any]:
    """The event's fields as plain JSON values (large live fields left out)."""
    return {
        field.name: plain(getattr(event, field.name))
        for field in attrs.fields(type(event))
        if field.name not in _SKIPPED_FIELDS
    }


def describe_event(event: Event, fields: Mapping[str, Any]) -> str:
    """``"ActFailed order/charge: ValueError: card declined"``."""
    text = type(event).__name__
    for key in _SUBJECT_FIELDS:
        subject = fields.get(key)
        if isinstance(subject, str):
            text += f" {subject}"
            break
    detail = fields.get("error") or fields.get("cause")
    if isinstance(detail, str):
        text += f": {detail}"
    return text


@final
class LoggingObserver:
    """An observer writing every event to a logging.Logger.

    Args:
        logger: Where to write; default the ``trio_sagas.events`` logger.
        level: Level of ordinary events (default INFO).
        failure_level: Level of events that report a failure, a cancellation
            or a timeout (``*Failed``, ``*Cancelled``, ``GlobalTimeoutReached``,
            ``TriggerMissing``); default WARNING.

    The record's ``extra`` holds ``saga_event`` (the event type's name) and
    every field as ``saga_<field>`` (``saga_run_id``, ``saga_step``,
    ``saga_cause``, …), converted to str/int/float/bool/None/lists so any
    formatter can serialise them. Nothing is formatted when the logger is
    not enabled for the level.

    Raises:
        TypeError, ValueError: bad arguments.
    """

    __slots__ = ("_failure_level", "_level", "_logger")

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        level: int = logging.INFO,
        failure_level: int = logging.WARNING,
    ) -> None:
        if logger is not None:
            check_type(logger, logging.Logger, "logger")
        self._logger = (
            logging.getLogger("trio_sagas.events") if logger is None else logger
        )
        self._level = check_int(level, "level", minimum=0)
        self._failure_level = check_int(failure_level, "failure_level", minimum=0)

    def __repr__(self) -> str:
        return f"trio_sagas.LoggingObserver({self._logger.name!r})"

    @property
    def logger(self) -> logging.Logger:
        """Where the events go."""
        return self._logger

    def __call__(self, event: Event) -> None:
        """Log *event*."""
        name = type(event).__name__
        failed = name.endswith(_FAILURE_NAMES) or getattr(event, "ok", True) is False
        level = self._failure_level if failed else self._level
        if not self._logger.isEnabledFor(level):
            return
        fields = event_fields(event)
        extra = {_PREFIX + key: value for key, value in fields.items()}
        extra[_PREFIX + "event"] = name
        self._logger.log(level, "%s", describe_event(event, fields), extra=extra)
