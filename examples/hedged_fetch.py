"""Hedged reads against a simulated replica set with a straggler.

Three replicas serve a key-value read in about 20 ms, except that now and
then one stalls for a second (a GC pause, a noisy neighbour). Each request
asks replica ``(request + hedge_index) % 3``, so a hedge always goes to
another replica. The executor hedges at the 95th percentile of recent read
latencies, with a token bucket capping hedges (so a burst of stalls shows
what a denied hedge costs), and retries a refused connection after a
backoff. Everything runs on a virtual clock, so the
times printed are exact and the script finishes at once.

Run: ``python examples/hedged_fetch.py``
"""

from __future__ import annotations

import random

import trio
import trio.testing

import trio_sagas


class ReplicaSet:
    """Three fake replicas: mostly fast, occasionally stalled, once refusing."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.calls = 0
        # (request, replica) pairs that stall: two lone stalls, then a burst
        # that drains the hedge budget.
        self.stalled = {(30, 0), (41, 2)} | {(r, r % 3) for r in range(50, 54)}

    async def read(self, request: int, replica: int, key: str) -> str:
        self.calls += 1
        if (request, replica) == (64, 64 % 3):
            await trio.sleep(0.002)
            raise ConnectionRefusedError(f"replica {replica} refused the connection")
        if (request, replica) in self.stalled:
            await trio.sleep(1.0)
        else:
            await trio.sleep(self.rng.choice([0.016, 0.02, 0.024]))
        return f"{key}=v{request} (replica {replica})"


def describe(
    record: trio_sagas.AttemptRecord, group: tuple[trio_sagas.AttemptRecord, ...]
) -> str:
    """One line per attempt; a cancelled one says who won instead."""
    role = f"hedge {record.hedge_index}" if record.is_hedge else "primary"
    what = record.status.name.lower()
    cause = record.cause
    if cause is not None and cause.reason is trio_sagas.CancelReason.WINNER:
        winner = next(r for r in group if r.status is trio_sagas.Status.SUCCEEDED)
        what += ": a hedge won" if winner.is_hedge else ": the primary won"
    elif cause is not None:
        what += f" ({cause.reason.value})"
    elif record.reason is not None:
        what += f" ({record.reason})"
    return (
        f"    #{record.attempt} group {record.retry_index} {role:<8} "
        f"{what:<24} {record.started_at * 1e3:7.1f} .. {record.finished_at * 1e3:7.1f} ms"
    )


async def main() -> None:
    replicas = ReplicaSet(seed=7)
    budget = trio_sagas.TokenBucketBudget(capacity=3, refill_per_second=0.5)
    executor = trio_sagas.Executor(
        triggers={"p95": trio_sagas.LatencyTrigger(percentile=0.95, min_samples=20)}
    )
    policy = trio_sagas.RetryPolicy(
        max_attempts=3,
        initial_backoff=0.05,
        hedge=trio_sagas.HedgePolicy(
            max_hedges=2, delay=0.1, trigger="p95", budget=budget
        ),
    )
    print("70 reads; hedging at p95 of recent latencies (0.1 s until 20 samples)")
    slowest = 0.0
    for request in range(70):

        async def read(attempt: trio_sagas.AttemptInfo, request: int = request) -> str:
            replica = (request + attempt.hedge_index + attempt.retry_index) % 3
            return await replicas.read(request, replica, key=f"user:{request}")

        start = trio.current_time()
        result = await executor.run(read, policy=policy, name="get-user")
        elapsed = trio.current_time() - start
        slowest = max(slowest, elapsed)
        records = result.attributes["attempts"]
        assert isinstance(records, tuple)
        if len(records) > 1:
            print(f"  read {request}: {result.value} in {elapsed * 1e3:.1f} ms")
            for record in records:
                group = tuple(r for r in records if r.retry_index == record.retry_index)
                print(describe(record, group))
    window = executor.latency("get-user")
    assert window is not None
    p95 = window.quantile(0.95)
    assert p95 is not None
    print(f"p95 of get-user now {p95 * 1e3:.1f} ms over {len(window)} samples")
    print(f"slowest read {slowest * 1e3:.1f} ms (a stalled replica takes 1000 ms)")
    print(f"replica calls: {replicas.calls} for 70 reads")
    stats = budget.statistics()
    print(f"hedge budget: {stats.hedges_granted} granted, {stats.hedges_denied} denied")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
