"""The observer protocol: delivery and isolation."""

from __future__ import annotations

import logging

import attrs
import pytest

from trio_sagas import Event
from trio_sagas._events import notify
from trio_sagas._validate import check_sync_observer


@attrs.frozen(kw_only=True)
class Ping(Event):
    """A test event."""

    n: int


def test_notify_delivers() -> None:
    """Events reach the observer; None means nobody listens."""
    seen: list[Event] = []
    notify(seen.append, Ping(at=1.0, n=1))
    notify(None, Ping(at=2.0, n=2))
    assert seen == [Ping(at=1.0, n=1)]


def test_raising_observer_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    """An observer that raises is logged and does not break the caller."""

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.ERROR, logger="trio_sagas"):
        notify(broken, Ping(at=0.0, n=1))
    (record,) = caplog.records
    assert "raised on Ping; the run goes on" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_observer_validation() -> None:
    """Observers must be sync callables."""

    async def async_observer(event: Event) -> None:
        pass

    check_sync_observer(None)
    check_sync_observer(print)
    with pytest.raises(TypeError, match="observer must be a sync callable"):
        check_sync_observer(async_observer)
    with pytest.raises(TypeError, match="observer must be a callable or None, got 3"):
        check_sync_observer(3)
