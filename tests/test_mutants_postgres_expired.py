"""PostgreSQL: a live worker an operator expired goes on under a new id for
its next run; runs created under the old id stay fenced. The checks are
``test_mutants_saga_journal_expired.py``'s (SQLite and memory there); this
file holds them apart so the mutation targets do not start a server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import trio_sagas

from .pg_server import PgServer
from .test_mutants_saga_journal_expired import (
    check_a_new_run_goes_on_under_the_new_id,
    check_an_older_run_is_still_fenced,
    check_runs_started_together_after_an_expiry,
    check_without_async_with,
)

Factory = Callable[..., Any]


@pytest.fixture
def pg_factory(pg_server: PgServer) -> Factory:
    """Makes PostgreSQL journals (workers) sharing one fresh schema."""
    schema = pg_server.new_schema()

    def make(**kwargs: Any) -> trio_sagas.PostgresJournal:
        kwargs.setdefault("lease", 5.0)
        return trio_sagas.PostgresJournal(pg_server.dsn, schema=schema, **kwargs)

    return make


async def test_postgres_new_run_after_an_expiry_goes_on(pg_factory: Factory) -> None:
    """After an operator expired this live worker, a 3-step saga is ok under the new id."""
    await check_a_new_run_goes_on_under_the_new_id(pg_factory)


async def test_postgres_run_created_before_the_expiry_is_fenced(
    pg_factory: Factory,
) -> None:
    """A run created under the expired id gets LeaseLostError; a later run finishes."""
    await check_an_older_run_is_still_fenced(pg_factory)


async def test_postgres_runs_started_together_after_an_expiry(
    pg_factory: Factory,
) -> None:
    """Three runs started at once after the expiry all finish under the new id."""
    await check_runs_started_together_after_an_expiry(pg_factory)


async def test_postgres_new_run_after_an_expiry_without_async_with(
    pg_factory: Factory,
) -> None:
    """Not entered (each run holds its own heartbeat): the run goes on too."""
    await check_without_async_with(pg_factory)
