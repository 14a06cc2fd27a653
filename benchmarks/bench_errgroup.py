"""Error group benchmarks (issue 3).

1. Spawn + join of 20,000 trivial tasks: ``open_err_group`` against a raw
   ``trio.open_nursery`` (target ratio <= 1.2, issue 16) and against anyio's
   ``TaskGroup`` on the trio backend, for reference. CPU time
   (``time.process_time``), interleaved rounds, median; the cyclic GC stays
   on, as in production (it is a third of the group's overhead when every
   task leaves an object behind).
2. Peer-cancel latency after a failure with 1,000 peers and a 30 s
   compensation, on a virtual clock: every peer must observe the cancel at the
   failure's instant (0 virtual seconds), before compensation's first action
   ends.
3. A compensation run of 2,000 undo actions under a ``RetryPolicy`` (each
   try bounded by a timeout, the whole run shielded): ``CompensationScope.run``
   against a hand-written loop doing the same tries in the same scopes and
   keeping each action's value (no object of ours). Two rows: every action
   succeeds at its first try (the common rollback), and every action fails
   once then succeeds (two tries, a zero backoff between). CPU time, per
   action µs.
"""

from __future__ import annotations

import math
import sys

import trio
import trio.testing
from _harness import compare, report

import trio_sagas

TASKS = 20_000


async def trivial() -> None:
    pass


async def with_nursery() -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(TASKS):
            nursery.start_soon(trivial)


async def with_err_group() -> None:
    async with trio_sagas.open_err_group(name="bench") as group:
        for _ in range(TASKS):
            group.start_soon(trivial)


async def with_anyio() -> None:
    import anyio

    async with anyio.create_task_group() as tg:
        for _ in range(TASKS):
            tg.start_soon(trivial)


def peer_cancel_latency(peers: int = 1_000) -> dict[str, float]:
    observed: list[float] = []
    undo_ended: list[float] = []

    async def peer() -> None:
        try:
            await trio.sleep(math.inf)
        except trio.Cancelled:
            observed.append(trio.current_time())
            raise

    async def undo() -> None:
        await trio.sleep(30)
        undo_ended.append(trio.current_time())

    async def failing(ctx: trio_sagas.StepContext) -> None:
        ctx.register_compensation(undo)
        await trio.sleep(1)
        raise RuntimeError("boom")

    async def main() -> None:
        try:
            async with trio_sagas.open_err_group(compensation_timeout=60) as group:
                for _ in range(peers):
                    group.start_soon(peer)
                group.start_step(failing, name="failing")
        except RuntimeError:
            pass

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(observed) == peers
    return {
        "peers": peers,
        "failure_at": 1.0,
        "max_cancel_latency_virtual_s": max(observed) - 1.0,
        "compensation_first_action_ended_at": undo_ended[0],
        "all_peers_cancelled_before_compensation_ended": max(observed) < undo_ended[0],
    }


ACTIONS = 2_000
UNDO_ATTEMPTS = 3
UNDO_RETRY = trio_sagas.RetryPolicy(max_attempts=UNDO_ATTEMPTS, initial_backoff=0.0)
UNDO_TIMEOUT = 10.0


class _Flaky:
    """An undo that fails its first try and succeeds at the second."""

    def __init__(self) -> None:
        self.tries = 0

    async def __call__(self) -> str:
        self.tries += 1
        if self.tries == 1:
            raise ConnectionError("try again")
        return "undone"


async def _undone() -> str:
    return "undone"


def _undos(flaky: bool) -> list[object]:
    return [_Flaky() if flaky else _undone for _ in range(ACTIONS)]


def compensation_with_scope(flaky: bool) -> None:
    undos = _undos(flaky)

    async def main() -> None:
        scope = trio_sagas.CompensationScope()
        for undo in undos:
            scope.register(undo)  # type: ignore[arg-type]
        report = await scope.run(retry=UNDO_RETRY, timeout=UNDO_TIMEOUT)
        assert report.ok

    trio.run(main)


def compensation_by_hand(flaky: bool) -> None:
    undos = _undos(flaky)

    async def main() -> None:
        actions = list(undos)  # registered
        values: list[object] = []
        with trio.CancelScope(shield=True):
            for undo in reversed(actions):
                for attempt in range(UNDO_ATTEMPTS):
                    if attempt:
                        await trio.sleep(0.0)  # UNDO_RETRY's backoff
                    try:
                        with trio.move_on_after(UNDO_TIMEOUT):
                            values.append(await undo())  # type: ignore[operator]
                            break
                    except Exception:
                        continue
        assert len(values) == ACTIONS

    trio.run(main)


def compensation_rows(rounds: int) -> list[dict[str, object]]:
    return [
        compare(
            f"compensation {ACTIONS // 1000}k, retry, 1st try ok / hand loop",
            lambda: compensation_with_scope(flaky=False),
            lambda: compensation_by_hand(flaky=False),
            key="compensation_retry_ok",
            items=ACTIONS,
            rounds=rounds,
        ),
        compare(
            f"compensation {ACTIONS // 1000}k, retry, 2nd try ok / hand loop",
            lambda: compensation_with_scope(flaky=True),
            lambda: compensation_by_hand(flaky=True),
            key="compensation_retry_flaky",
            items=ACTIONS,
            rounds=rounds,
        ),
    ]


def main() -> None:
    rounds = 3 if "--quick" in sys.argv else 11
    rows = [
        compare(
            "spawn+join 20k: err_group / trio nursery",
            lambda: trio.run(with_err_group),
            lambda: trio.run(with_nursery),
            rounds=rounds,
            target=1.2,
        )
    ]
    try:
        import anyio  # noqa: F401
    except ImportError:
        pass
    else:
        rows.append(
            compare(
                "spawn+join 20k: err_group / anyio TaskGroup",
                lambda: trio.run(with_err_group),
                lambda: trio.run(with_anyio),
                rounds=rounds,
            )
        )
    rows.extend(compensation_rows(rounds))
    latency = peer_cancel_latency()
    assert latency["max_cancel_latency_virtual_s"] == 0.0
    assert latency["all_peers_cancelled_before_compensation_ended"]
    report("errgroup", rows, {"peer_cancel": latency})


if __name__ == "__main__":
    main()
