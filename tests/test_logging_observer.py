"""LoggingObserver: readable messages, fields in ``extra``, composition."""

from __future__ import annotations

import json
import logging

import pytest
import trio
import trio.testing

import trio_sagas
from trio_sagas import Act, LoggingObserver, Scene, run_scene


async def _ok(ctx: trio_sagas.StepContext, state: object) -> None:
    await trio.sleep(1)


async def _undo(ctx: trio_sagas.StepContext, state: object) -> None:
    await trio.sleep(1)


async def _declined(ctx: trio_sagas.StepContext, state: object) -> None:
    await trio.sleep(1)
    raise ValueError("card declined")


SCENE = Scene(
    "order",
    [Act("reserve", _ok, compensate=_undo), Act("charge", _declined)],
    saga=True,
)


async def test_every_event_is_logged_with_fields(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """Each saga event is one record: message readable, fields under saga_* keys."""
    caplog.set_level(logging.DEBUG, logger="trio_sagas.events")
    seen: list[trio_sagas.Event] = []
    result = await run_scene(
        SCENE,
        {},
        run_id="r1",
        observer=trio_sagas.observers(LoggingObserver(), seen.append),
    )
    assert not result.ok
    records = [r for r in caplog.records if r.name == "trio_sagas.events"]
    assert [r.saga_event for r in records] == [type(e).__name__ for e in seen]  # type: ignore[attr-defined]
    messages = [r.getMessage() for r in records]
    assert "ActStarted order/reserve" in messages
    assert "ActFailed order/charge: ValueError: card declined" in messages
    failed = next(r for r in records if r.saga_event == "ActFailed")  # type: ignore[attr-defined]
    assert failed.levelno == logging.WARNING
    assert failed.saga_run_id == "r1"  # type: ignore[attr-defined]
    assert failed.saga_step == "order/charge"  # type: ignore[attr-defined]
    assert failed.saga_status == "failed"  # type: ignore[attr-defined]
    assert failed.saga_at == 2.0  # type: ignore[attr-defined]
    started = next(r for r in records if r.saga_event == "ActStarted")  # type: ignore[attr-defined]
    assert started.levelno == logging.INFO
    # Every extra value is plain JSON: a JSON formatter needs no help.
    for record in records:
        extra = {k: v for k, v in vars(record).items() if k.startswith("saga_")}
        assert json.loads(json.dumps(extra)) == extra


async def test_cancel_cause_is_text(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """A cancelled step's cause is logged as its one-line description."""
    caplog.set_level(logging.INFO, logger="trio_sagas.events")

    async def slow(ctx: trio_sagas.StepContext, state: object) -> None:
        await trio.sleep(10)

    scene = Scene("t", [Act("slow", slow, timeout=2)])
    await run_scene(scene, {}, run_id="r2", observer=LoggingObserver())
    records = [r for r in caplog.records if r.name == "trio_sagas.events"]
    failed = [r for r in records if r.saga_event == "SceneFailed"]  # type: ignore[attr-defined]
    assert len(failed) == 1
    assert failed[0].saga_status == "timed_out"  # type: ignore[attr-defined]


def test_disabled_logger_formats_nothing() -> None:
    """A logger not enabled for the level gets no record (and builds no extra)."""
    logger = logging.getLogger("trio_sagas.test.disabled")
    logger.setLevel(logging.ERROR)
    handler_records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_records.append(record)

    logger.addHandler(Keep())
    try:
        observer = LoggingObserver(logger)
        observer(trio_sagas.ActStarted(at=0.0, run_id="r", seq=0, step="a"))
        assert handler_records == []
        observer2 = LoggingObserver(logger, level=logging.ERROR)
        observer2(trio_sagas.ActStarted(at=0.0, run_id="r", seq=0, step="a"))
        assert [r.getMessage() for r in handler_records] == ["ActStarted a"]
    finally:
        logger.handlers.clear()


def test_repr_and_logger() -> None:
    """The repr names the logger; the default logger is trio_sagas.events."""
    observer = LoggingObserver()
    assert observer.logger.name == "trio_sagas.events"
    assert repr(observer) == "trio_sagas.LoggingObserver('trio_sagas.events')"


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"logger": "x"}, TypeError, "logger must be a Logger, got 'x'"),
        ({"level": "INFO"}, TypeError, "level must be an int >= 0, got 'INFO'"),
        ({"level": True}, TypeError, "level must be an int >= 0, got True"),
        ({"level": -1}, ValueError, "level must be an int >= 0, got -1"),
        ({"failure_level": 1.5}, TypeError, "failure_level must be an int >= 0"),
    ],
)
def test_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], text: str
) -> None:
    """Bad arguments raise TypeError/ValueError naming the argument and value."""
    with pytest.raises(error, match=text.replace("(", r"\(")):
        LoggingObserver(**kwargs)  # type: ignore[arg-type]


def test_observers_is_public() -> None:
    """trio_sagas.observers composes; a failing member does not stop the others."""
    got: list[str] = []

    def broken(event: trio_sagas.Event) -> None:
        raise RuntimeError("boom")

    combined = trio_sagas.observers(broken, lambda e: got.append(type(e).__name__))
    assert combined is not None
    combined(trio_sagas.ActStarted(at=0.0, run_id="r", seq=0, step="a"))
    assert got == ["ActStarted"]
    assert trio_sagas.observers(None) is None
