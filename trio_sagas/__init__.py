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
from ._ignition import ExecutionMode as ExecutionMode
from ._ignition import GlobalTimeoutReached as GlobalTimeoutReached
from ._ignition import Ignition as Ignition
from ._ignition import IgnitionCompleted as IgnitionCompleted
from ._ignition import IgnitionPolicy as IgnitionPolicy
from ._ignition import IgnitionResult as IgnitionResult
from ._ignition import SignalCompleted as SignalCompleted
from ._ignition import SignalStarted as SignalStarted
from ._ignition import StagePolicy as StagePolicy
from ._ignition import StageResult as StageResult
from ._ignition import StageStarted as StageStarted
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
    "ExecutionMode",
    "GlobalTimeoutReached",
    "HedgePolicy",
    "Ignition",
    "IgnitionCompleted",
    "IgnitionPolicy",
    "IgnitionResult",
    "MissingTrigger",
    "Observer",
    "Outcome",
    "OutcomeError",
    "RetryPolicy",
    "SagaError",
    "SignalCompleted",
    "SignalStarted",
    "StagePolicy",
    "StageResult",
    "StageStarted",
    "Status",
    "StepContext",
)

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
