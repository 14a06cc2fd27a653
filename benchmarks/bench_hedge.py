"""Hedged retry executor: success-path overhead, tail latency, memory per call name.

Clock: section 1 is CPU time of this process (``time.process_time``), in
interleaved rounds (medians of per-round ratios); section 2 runs on trio's
virtual clock (``MockClock``), so its latencies are simulated, not measured;
section 3 is memory (tracemalloc).

1. Success-path overhead: ``Executor.run`` against tenacity and stamina on
   trio, for the same policy (3 attempts, exponential backoff 0.1 s x2 up to
   10 s, retry on any exception) and an operation that succeeds at once, in
   each library's two forms: the per-call iterator (tenacity's
   ``AsyncRetrying``, stamina's ``retry_context``, which build their retry
   state on every call) and the decorator (``@tenacity.retry``,
   ``@stamina.retry``, configured once). Rows have stable keys and per-call
   µs (``candidate_us``, ``baseline_us``, ``overhead_us``). Target ratio <= 1.0.
2. "The Tail at Scale" on virtual time: 99 % of attempts take a lognormal
   ~10 ms, 1 % are stragglers 50-100x slower; each attempt (a hedge goes to
   another replica) draws its own latency. Reported: p50/p99/p99.9 and extra
   attempts for no hedging, a fixed 20 ms delay, and ``LatencyTrigger(p95)``.
   Target: p99.9 cut >= 20x with <= 5 % extra attempts. A latency CDF is
   saved to ``docs/_static/hedge_cdf.png`` (a ``--quick`` run draws it into
   the git-ignored ``benchmarks/scratch/`` instead).
3. Memory kept per distinct call name (tracemalloc, after ``gc.collect()``):
   an executor serving NAMES calls with a fresh name each, unhedged, hedged
   on a fixed delay, and hedged on a ``LatencyTrigger`` (windows capped at
   ``max_windows``, 1000 by default). Target: flat, i.e. no growth with the
   number of names beyond ``max_windows`` windows (it was ~20 KiB per name,
   forever, whatever the policy).

Run with ``nox -s bench`` (``-- --quick`` for a smoke run).
"""

from __future__ import annotations

import math
import pathlib
import random
import statistics
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import stamina
import tenacity
import trio
import trio.testing
from _harness import compare, report

import trio_sagas

QUICK = "--quick" in sys.argv
CALLS = 200 if QUICK else 2000
ROUNDS = 3 if QUICK else 11
REQUESTS = 2000 if QUICK else 20000
NAMES = 1500 if QUICK else 20000
ROOT = pathlib.Path(__file__).parent.parent
# A smoke run never changes a published figure.
PNG = (ROOT / "benchmarks" / "scratch" if QUICK else ROOT / "docs" / "_static") / (
    "hedge_cdf.png"
)

POLICY = trio_sagas.RetryPolicy(
    max_attempts=3, initial_backoff=0.1, max_backoff=10.0, multiplier=2.0
)
HEDGED = trio_sagas.RetryPolicy(
    max_attempts=3,
    initial_backoff=0.1,
    max_backoff=10.0,
    multiplier=2.0,
    hedge=trio_sagas.HedgePolicy(max_hedges=2, delay=0.2),
)


async def succeed(info: object = None) -> int:
    return 1


def ours(policy: trio_sagas.RetryPolicy) -> Callable[[], object]:
    executor = trio_sagas.Executor()

    async def main() -> None:
        for _ in range(CALLS):
            (await executor.run(succeed, policy=policy, name="op")).unwrap()

    return lambda: trio.run(main)


def with_tenacity() -> object:
    async def main() -> None:
        for _ in range(CALLS):
            async for attempt in tenacity.AsyncRetrying(
                stop=tenacity.stop_after_attempt(3),
                wait=tenacity.wait_exponential(multiplier=0.1, exp_base=2, max=10),
                retry=tenacity.retry_if_exception_type(Exception),
                sleep=trio.sleep,
                reraise=True,
            ):
                with attempt:
                    await succeed()

    return trio.run(main)


@tenacity.retry(
    stop=tenacity.stop_after_attempt(3),
    wait=tenacity.wait_exponential(multiplier=0.1, exp_base=2, max=10),
    retry=tenacity.retry_if_exception_type(Exception),
    sleep=trio.sleep,
    reraise=True,
)
async def succeed_tenacity() -> int:
    return await succeed()


@stamina.retry(
    on=Exception,
    attempts=3,
    wait_initial=0.1,
    wait_max=10.0,
    wait_jitter=0.0,
    wait_exp_base=2,
    timeout=None,
)
async def succeed_stamina() -> int:
    return await succeed()


def decorated(fn: Callable[[], Awaitable[int]]) -> Callable[[], object]:
    """CALLS calls of a function decorated once, in one trio.run."""

    async def main() -> None:
        for _ in range(CALLS):
            await fn()

    return lambda: trio.run(main)


def with_stamina() -> object:
    async def main() -> None:
        for _ in range(CALLS):
            async for attempt in stamina.retry_context(
                on=Exception,
                attempts=3,
                wait_initial=0.1,
                wait_max=10.0,
                wait_jitter=0.0,
                wait_exp_base=2,
                timeout=None,
            ):
                with attempt:
                    await succeed()

    return trio.run(main)


# -- tail at scale ------------------------------------------------------------


def attempt_latency(rng: random.Random) -> float:
    base = rng.lognormvariate(math.log(0.010), 0.25)
    if rng.random() < 0.01:
        return base * rng.uniform(50, 100)
    return base


def simulate(
    policy: trio_sagas.RetryPolicy, executor: trio_sagas.Executor
) -> dict[str, Any]:
    rng = random.Random(2013)  # same stream for every configuration
    latencies: list[float] = []
    attempts = 0

    async def op(info: trio_sagas.AttemptInfo) -> None:
        await trio.sleep(attempt_latency(rng))

    async def main() -> None:
        nonlocal attempts
        for _ in range(REQUESTS):
            result = await executor.run(op, policy=policy, name="read")
            assert result.ok
            assert result.duration is not None
            latencies.append(result.duration)
            timeline = result.attributes["attempts"]
            assert isinstance(timeline, tuple)
            attempts += sum(r.status is not trio_sagas.Status.SKIPPED for r in timeline)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, math.ceil(q * len(latencies)) - 1)]

    return {
        "p50_ms": pct(0.50) * 1e3,
        "p99_ms": pct(0.99) * 1e3,
        "p999_ms": pct(0.999) * 1e3,
        "mean_ms": statistics.fmean(latencies) * 1e3,
        "extra_attempts_pct": (attempts - REQUESTS) / REQUESTS * 100,
        "latencies": latencies,
    }


def tail_at_scale() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    no_hedge = trio_sagas.RetryPolicy(max_attempts=1)
    fixed = trio_sagas.RetryPolicy(
        max_attempts=1, hedge=trio_sagas.HedgePolicy(max_hedges=2, delay=0.020)
    )
    p95 = trio_sagas.RetryPolicy(
        max_attempts=1,
        hedge=trio_sagas.HedgePolicy(max_hedges=2, delay=0.020, trigger="p95"),
    )
    registry = {"p95": trio_sagas.LatencyTrigger(percentile=0.95, min_samples=50)}
    configs = {
        "no hedging": (no_hedge, trio_sagas.Executor()),
        "fixed delay 20 ms": (fixed, trio_sagas.Executor()),
        "LatencyTrigger(p95)": (p95, trio_sagas.Executor(triggers=registry)),
    }
    results = {label: simulate(policy, ex) for label, (policy, ex) in configs.items()}
    base = results["no hedging"]["p999_ms"]
    print(f"\n== tail at scale: {REQUESTS} requests, 1 % stragglers 50-100x ==")
    print(
        f"{'config':<22} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'cut':>6} {'extra':>7}"
    )
    summary: dict[str, Any] = {}
    for label, r in results.items():
        cut = base / r["p999_ms"]
        print(
            f"{label:<22} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['p999_ms']:9.2f} "
            f"{cut:5.1f}x {r['extra_attempts_pct']:6.2f}%"
        )
        summary[label] = {k: round(v, 3) for k, v in r.items() if k != "latencies"} | {
            "p999_cut": round(cut, 2)
        }
    for label in ("fixed delay 20 ms", "LatencyTrigger(p95)"):
        row = summary[label]
        row["met"] = row["p999_cut"] >= 20 and row["extra_attempts_pct"] <= 5
    plot(results)
    return [], summary


def plot(results: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    fig, (cdf, tail) = plt.subplots(1, 2, figsize=(10, 4.6), dpi=100)
    for label, r in results.items():
        xs = [x * 1e3 for x in r["latencies"]]
        n = len(xs)
        ys = [(i + 1) / n for i in range(n)]
        cdf.plot(xs, ys, label=label)
        tail.plot(xs, [1 - y + 1 / n for y in ys], label=label)
    cdf.set(
        xscale="log",
        xlabel="request latency (ms, log scale)",
        ylabel="fraction of requests (cumulative)",
        title="Latency CDF",
    )
    tail.set(
        xscale="log",
        yscale="log",
        xlabel="request latency (ms, log scale)",
        ylabel="fraction slower (log scale)",
        title="Tail: 1 - CDF",
    )
    for ax in (cdf, tail):
        ax.grid(True, which="both", alpha=0.3)
    tail.axhline(1e-3, color="grey", linestyle=":", linewidth=1)
    # The p99.9 label sits inside the axes, clear of the y axis and of the
    # curves (which are still near 1 at the left).
    tail.text(
        0.03,
        1.15e-3,
        "p99.9",
        color="grey",
        ha="left",
        va="bottom",
        transform=blended_transform_factory(tail.transAxes, tail.transData),
    )
    # One legend for both panels, below them, so it hides no curve.
    handles, labels = cdf.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle("Hedged requests, 1 % stragglers 50-100x slower (virtual time)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    PNG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PNG)
    plt.close(fig)
    print(f"CDF written to {PNG.relative_to(ROOT)}")


def window_memory() -> dict[str, Any]:
    """Bytes an executor keeps after NAMES calls, each under a new name."""
    import gc
    import tracemalloc

    policies = {
        "unhedged": POLICY,
        "fixed_delay": HEDGED,
        "latency_trigger": trio_sagas.RetryPolicy(
            hedge=trio_sagas.HedgePolicy(trigger="p95")
        ),
    }
    kept: dict[str, Any] = {"names": NAMES}
    for label, policy in policies.items():
        holder: list[trio_sagas.Executor] = []

        async def main(
            policy: trio_sagas.RetryPolicy = policy,
            holder: list[trio_sagas.Executor] = holder,
        ) -> None:
            executor = trio_sagas.Executor(
                triggers={"p95": trio_sagas.LatencyTrigger()}
            )
            holder.append(executor)
            for i in range(NAMES):
                await executor.run(succeed, policy=policy, name=f"request-{i}")

        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        trio.run(main)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        kept[f"{label}_kib"] = round((after - before) / 1024, 1)
        kept[f"{label}_bytes_per_name"] = round((after - before) / NAMES, 1)
        holder.clear()
    return kept


def main() -> None:
    success = {"rounds": ROUNDS, "items": CALLS}
    rows = [
        compare(
            "Executor.run vs tenacity AsyncRetrying (success)",
            ours(POLICY),
            with_tenacity,
            key="vs_tenacity_async_retrying",
            target=1.0,
            **success,
        ),
        compare(
            "Executor.run vs @tenacity.retry (success)",
            ours(POLICY),
            decorated(succeed_tenacity),
            key="vs_tenacity_decorator",
            target=1.0,
            **success,
        ),
        compare(
            "Executor.run vs stamina retry_context (success)",
            ours(POLICY),
            with_stamina,
            key="vs_stamina_retry_context",
            target=1.0,
            **success,
        ),
        compare(
            "Executor.run vs @stamina.retry (success)",
            ours(POLICY),
            decorated(succeed_stamina),
            key="vs_stamina_decorator",
            target=1.0,
            **success,
        ),
        compare(
            "Executor.run hedged policy vs tenacity (success)",
            ours(HEDGED),
            with_tenacity,
            key="hedged_vs_tenacity_async_retrying",
            **success,
        ),
    ]
    _, tail = tail_at_scale()
    memory = window_memory()
    report(
        "hedge",
        rows,
        extra={
            "clock": "process_time (CPU) for the rows; virtual time for tail_at_scale",
            "calls_per_round": CALLS,
            "tail_at_scale": tail,
            "window_memory": memory,
        },
    )


if __name__ == "__main__":
    main()
