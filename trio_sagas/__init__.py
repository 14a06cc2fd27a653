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
from ._hedge import CHECK_FLOOR as CHECK_FLOOR
from ._hedge import AttemptFinished as AttemptFinished
from ._hedge import AttemptInfo as AttemptInfo
from ._hedge import AttemptRecord as AttemptRecord
from ._hedge import BudgetDecision as BudgetDecision
from ._hedge import Classifier as Classifier
from ._hedge import Executor as Executor
from ._hedge import FixedDelayTrigger as FixedDelayTrigger
from ._hedge import HedgeCancelled as HedgeCancelled
from ._hedge import HedgeSpawned as HedgeSpawned
from ._hedge import HedgeState as HedgeState
from ._hedge import HedgeTrigger as HedgeTrigger
from ._hedge import LatencyTrigger as LatencyTrigger
from ._hedge import LatencyWindow as LatencyWindow
from ._hedge import RetryScheduled as RetryScheduled
from ._hedge import TokenBucketBudget as TokenBucketBudget
from ._hedge import TokenBucketStatistics as TokenBucketStatistics
from ._hedge import TriggerDecision as TriggerDecision
from ._hedge import TriggerMissing as TriggerMissing
from ._hedge import TriggerRegistry as TriggerRegistry
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
    "CHECK_FLOOR",
    "DEFAULT_COMPENSATION_TIMEOUT",
    "AttemptFinished",
    "AttemptInfo",
    "AttemptRecord",
    "Budget",
    "BudgetDecision",
    "BudgetKind",
    "CancelCause",
    "CancelOrigin",
    "CancelReason",
    "CancellationScope",
    "CancellationScopeStatistics",
    "Classification",
    "Classified",
    "Classifier",
    "CompensationPolicy",
    "CompensationReport",
    "CompensationScope",
    "Event",
    "Executor",
    "FixedDelayTrigger",
    "HedgeCancelled",
    "HedgePolicy",
    "HedgeSpawned",
    "HedgeState",
    "HedgeTrigger",
    "LatencyTrigger",
    "LatencyWindow",
    "MissingTrigger",
    "Observer",
    "Outcome",
    "OutcomeError",
    "RetryPolicy",
    "RetryScheduled",
    "SagaError",
    "Status",
    "StepContext",
    "TokenBucketBudget",
    "TokenBucketStatistics",
    "TriggerDecision",
    "TriggerMissing",
    "TriggerRegistry",
)

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
