"""Writing a batch of run creations and fenced appends, and settling "did my
commit land?".

One statement writes every request of a batch; its result says, per request,
whether it committed, and if not, why (:func:`_verdicts`). When the
connection drops with the statement in flight, the outcome is unknown: the
journal reconnects and rereads each run (:func:`_settle`). Still held under
the same (worker, epoch) and ``last_seq`` equal to the request's last seq
means it committed — ``(run_id, seq)`` is unique, so nobody else wrote those
entries; ``last_seq`` still at the request's previous seq means it did not,
and it is sent again. A creation landed if the run is there at epoch 1,
``last_seq`` -1, held by its creator; it did not if the run is absent. A
statement that failed for another reason is retried
one request at a time, so one bad run fails only itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from .._saga._journal import (
    JournalError,
    LeaseLostError,
    RunClaimedError,
    RunIdInUseError,
    RunNotFoundError,
)
from ._pg_batch import AppendRequest
from ._pg_conn import Connection, is_connection_error

RECONNECT_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)
"""Waits between tries to reach the server again after a lost connection."""

MAX_RESENDS = 3


_ENTRY_KEYS = ("run_id", "seq", "kind", "step", "at", "data", "value")


def _hex(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def _params(batch: Sequence[AppendRequest]) -> dict[str, str]:
    new: list[dict[str, Any]] = []
    req: list[dict[str, Any]] = []
    ent: list[dict[str, Any]] = []
    for index, r in enumerate(batch):
        f = r.fence
        if r.scene is not None:
            new.append(
                {"i": index, "run_id": f.run_id, "scene": r.scene,
                 "worker_id": f.worker, "state": _hex(r.state)}
            )  # fmt: skip
            continue
        req.append(
            {"i": index, "run_id": f.run_id, "worker_id": f.worker, "epoch": f.epoch,
             "prev": r.prev, "last": r.last, "state": _hex(r.state), "status": r.status}
        )  # fmt: skip
        for entry in r.entries:
            row = dict(zip(_ENTRY_KEYS, entry, strict=True))
            row["value"] = _hex(row["value"])
            ent.append(row)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    return {"new": dumps(new), "req": dumps(req), "ent": dumps(ent)}


def _write(sql: str, params: dict[str, str], conn: Any) -> list[tuple[Any, ...]]:
    return list(conn.execute(sql, params).fetchall())


async def execute_batch(
    conn: Connection,
    sql: Mapping[str, str],
    batch: list[AppendRequest],
    where: str,
) -> None:
    """Write *batch*, setting ``committed`` or ``error`` on every request."""
    pending = batch
    for _ in range(MAX_RESENDS):
        write = functools.partial(_write, sql["WRITE_BATCH"], _params(pending))
        try:
            rows = await conn.run(write)
        except JournalError as exc:
            if not (exc.__cause__ and is_connection_error(exc.__cause__)):
                if len(pending) == 1:
                    pending[0].error = exc
                    return
                # Isolate the run that broke the statement.
                for request in pending:
                    await execute_batch(conn, sql, [request], where)
                return
            pending = await _settle(conn, sql, pending, where, exc)
            if not pending:
                return
            continue
        _verdicts(pending, rows, where)
        return
    for request in pending:
        request.error = JournalError(
            f"{where}: gave up appending to run {request.fence.run_id!r} after "
            f"{MAX_RESENDS} lost connections; it did not commit"
        )


def _verdicts(
    batch: Sequence[AppendRequest], rows: Sequence[tuple[Any, ...]], where: str
) -> None:
    for index, ok, worker, epoch, status, last_seq, live in rows:
        request = batch[index]
        fence = request.fence
        run = f"run {fence.run_id!r}"
        if ok:
            request.committed = True
        elif request.scene is not None:
            request.error = (
                RunIdInUseError(
                    f"run id {fence.run_id!r} is already in {where}; run ids are "
                    "never reused"
                )
                if live
                else LeaseLostError(
                    f"worker {fence.worker!r}'s lease lapsed before creating {run}"
                )
            )
        elif epoch is None:
            request.error = RunNotFoundError(f"{run} is not in {where}")
        elif (worker, epoch) != (fence.worker, fence.epoch):
            request.error = RunClaimedError(
                f"{run} was taken over: it is at epoch {epoch} held by {worker!r}; "
                f"this write came from epoch {fence.epoch} of {fence.worker!r}"
            )
        elif status != "running":
            request.error = RunClaimedError(f"{run} is {status}, no longer RUNNING")
        elif not live:
            request.error = LeaseLostError(
                f"worker {fence.worker!r}'s lease lapsed; it may no longer write "
                f"to {run} (nothing was written)"
            )
        elif request.prev is not None and last_seq != request.prev:
            request.error = JournalError(
                f"entries for {run} do not continue it: its last seq is "
                f"{last_seq}, the first new seq is {request.prev + 1}"
            )
        else:
            request.error = RunClaimedError(f"{run} changed hands during the write")


async def _settle(
    conn: Connection,
    sql: Mapping[str, str],
    pending: Sequence[AppendRequest],
    where: str,
    lost: JournalError,
) -> list[AppendRequest]:
    """After a lost connection: mark what committed, fail what cannot be
    known or was refused, return what is known not to have committed."""
    runs = [r.fence.run_id for r in pending]
    rows: list[tuple[Any, ...]] | None = None
    for delay in RECONNECT_DELAYS:
        try:
            rows = await conn.run(
                lambda c: c.execute(sql["FENCE_STATE"], {"runs": runs}).fetchall()
            )
            break
        except JournalError as exc:
            if not (exc.__cause__ and is_connection_error(exc.__cause__)):
                break
            await trio.sleep(delay)
    if rows is None:
        for request in pending:
            request.error = JournalError(
                f"{where}: the connection was lost while appending to run "
                f"{request.fence.run_id!r} and the server could not be reached "
                f"again: whether the write committed is unknown ({lost})"
            )
        return []
    state = {row[0]: row[1:] for row in rows}
    resend = []
    for request in pending:
        fence = request.fence
        found = state.get(fence.run_id)
        if request.scene is not None:
            # A creation landed if the run is there as it would have made it.
            if found is None:
                resend.append(request)
            elif found == (fence.worker, 1, "running", -1):
                request.committed = True
            else:
                request.error = RunIdInUseError(
                    f"run id {fence.run_id!r} is already in {where}"
                )
            continue
        if found is None:
            request.error = RunNotFoundError(f"run {fence.run_id!r} is not in {where}")
            continue
        worker, epoch, status, last_seq = found
        if (worker, epoch) != (fence.worker, fence.epoch):
            request.error = RunClaimedError(
                f"run {fence.run_id!r} was taken over (epoch {epoch}, worker "
                f"{worker!r}) while this write's connection was lost"
            )
        elif request.last is not None and last_seq == request.last:
            request.committed = True
        elif request.last is None and request.status not in (None, "running"):
            if status == request.status:
                request.committed = True
            elif status == "running":
                resend.append(request)
            else:
                request.error = RunClaimedError(f"run {fence.run_id!r} is {status}")
        elif status == "running" and (request.prev is None or last_seq == request.prev):
            resend.append(request)
        else:
            request.error = RunClaimedError(
                f"run {fence.run_id!r} is {status} at seq {last_seq}; this write "
                "did not commit"
            )
    return resend


async def claim_settled(
    control: Connection, sql: Mapping[str, str], name: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Run claim statement *name*; the rows it claimed, also when the
    connection dropped with the COMMIT in flight (``params["token"]``, set by
    the claim, finds exactly the rows it touched)."""
    try:
        return await control.run(lambda c: c.execute(sql[name], params).fetchall())
    except JournalError as exc:
        if not (exc.__cause__ and is_connection_error(exc.__cause__)):
            raise
    return await control.run(
        lambda c: c.execute(sql["CLAIMED_BY_TOKEN"], params).fetchall(), retry=True
    )
