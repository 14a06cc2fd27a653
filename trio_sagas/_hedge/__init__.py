"""Hedged retries: the executor, its triggers, budgets, latency window and events."""

from __future__ import annotations

from .._retry import AttemptInfo as AttemptInfo
from .._retry import AttemptRecord as AttemptRecord
from .._retry import Classifier as Classifier
from ._budget import TokenBucketBudget as TokenBucketBudget
from ._budget import TokenBucketStatistics as TokenBucketStatistics
from ._events import AttemptFinished as AttemptFinished
from ._events import BudgetDecision as BudgetDecision
from ._events import HedgeCancelled as HedgeCancelled
from ._events import HedgeSpawned as HedgeSpawned
from ._events import RetryScheduled as RetryScheduled
from ._events import TriggerDecision as TriggerDecision
from ._events import TriggerMissing as TriggerMissing
from ._executor import Executor as Executor
from ._latency import LatencyWindow as LatencyWindow
from ._trigger import CHECK_FLOOR as CHECK_FLOOR
from ._trigger import FixedDelayTrigger as FixedDelayTrigger
from ._trigger import HedgeState as HedgeState
from ._trigger import HedgeTrigger as HedgeTrigger
from ._trigger import LatencyTrigger as LatencyTrigger
from ._trigger import TriggerRegistry as TriggerRegistry
