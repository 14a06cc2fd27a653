"""Structured resilience for Trio programs.

Error groups whose first failure cancels peers before compensation runs,
named cancellation trees, sagas, hedged retries, fan-in and startup
coordination, all reporting through :class:`Outcome` records.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._cancel import CancellationScope as CancellationScope
from ._cancel import CancellationScopeStatistics as CancellationScopeStatistics
from ._compensation import DEFAULT_COMPENSATION_TIMEOUT as DEFAULT_COMPENSATION_TIMEOUT
from ._compensation import CompensationPolicy as CompensationPolicy
from ._compensation import CompensationReport as CompensationReport
from ._compensation import CompensationScope as CompensationScope
from ._compensation import SagaError as SagaError
from ._compensation import StepContext as StepContext
from ._events import Event as Event
from ._events import Observer as Observer
from ._fanin import MergedReceiveChannel as MergedReceiveChannel
from ._fanin import MergeStatistics as MergeStatistics
from ._fanin import fan_in as fan_in
from ._fanin import open_merge as open_merge
from ._outcome import CancelCause as CancelCause
from ._outcome import CancelOrigin as CancelOrigin
from ._outcome import CancelReason as CancelReason
from ._outcome import Outcome as Outcome
from ._outcome import OutcomeError as OutcomeError
from ._outcome import Status as Status
from ._retry import Budget as Budget
from ._retry import BudgetKind as BudgetKind
from ._retry import Classification as Classification
from ._retry import Classified as Classified
from ._retry import HedgePolicy as HedgePolicy
from ._retry import MissingTrigger as MissingTrigger
from ._retry import RetryPolicy as RetryPolicy
from ._util import fixup_module_metadata as _fixup_module_metadata

try:
    __version__ = version("trio-sagas")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = (
    "DEFAULT_COMPENSATION_TIMEOUT",
    "Budget",
    "BudgetKind",
    "CancelCause",
    "CancelOrigin",
    "CancelReason",
    "CancellationScope",
    "CancellationScopeStatistics",
    "Classification",
    "Classified",
    "CompensationPolicy",
    "CompensationReport",
    "CompensationScope",
    "Event",
    "HedgePolicy",
    "MergeStatistics",
    "MergedReceiveChannel",
    "MissingTrigger",
    "Observer",
    "Outcome",
    "OutcomeError",
    "RetryPolicy",
    "SagaError",
    "Status",
    "StepContext",
    "fan_in",
    "open_merge",
)

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
