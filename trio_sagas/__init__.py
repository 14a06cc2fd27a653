"""Structured resilience for Trio programs.

Error groups whose first failure cancels peers before compensation runs,
named cancellation trees, sagas, hedged retries, fan-in and startup
coordination, all reporting through :class:`Outcome` records.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._cancel import CancellationScope as CancellationScope
from ._cancel import CancellationScopeStatistics as CancellationScopeStatistics
from ._compensation import DEFAULT_COMPENSATION_TIMEOUT as DEFAULT_COMPENSATION_TIMEOUT
from ._compensation import CompensationPolicy as CompensationPolicy
from ._compensation import CompensationReport as CompensationReport
from ._compensation import CompensationScope as CompensationScope
from ._compensation import SagaError as SagaError
from ._context import StepContext as StepContext
from ._errgroup import ErrGroup as ErrGroup
from ._errgroup import ErrGroupStatistics as ErrGroupStatistics
from ._errgroup import GroupCancelled as GroupCancelled
from ._errgroup import GroupCompensationCompleted as GroupCompensationCompleted
from ._errgroup import GroupCompensationStarted as GroupCompensationStarted
from ._errgroup import GroupTaskFinished as GroupTaskFinished
from ._errgroup import open_err_group as open_err_group
from ._events import Event as Event
from ._events import Observer as Observer
from ._events import observers as observers
from ._fanin import fan_in as fan_in
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
from ._journal import PostgresJournal as PostgresJournal
from ._journal import SQLiteJournal as SQLiteJournal
from ._logging import LoggingObserver as LoggingObserver
from ._merge import MergedReceiveChannel as MergedReceiveChannel
from ._merge import MergeStatistics as MergeStatistics
from ._merge import open_merge as open_merge
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
from ._retry import ResultRejected as ResultRejected
from ._retry import RetryPolicy as RetryPolicy
from ._saga import DEFAULT_COMPENSATION_RETRY as DEFAULT_COMPENSATION_RETRY
from ._saga import DEFAULT_LEASE as DEFAULT_LEASE
from ._saga import DEFAULT_MAX_CLAIMS as DEFAULT_MAX_CLAIMS
from ._saga import HELD_ELSEWHERE as HELD_ELSEWHERE
from ._saga import Act as Act
from ._saga import ActCancelled as ActCancelled
from ._saga import ActCompleted as ActCompleted
from ._saga import ActFailed as ActFailed
from ._saga import ActStarted as ActStarted
from ._saga import Chorus as Chorus
from ._saga import ChorusCompleted as ChorusCompleted
from ._saga import ChorusFailed as ChorusFailed
from ._saga import ChorusMode as ChorusMode
from ._saga import ChorusStarted as ChorusStarted
from ._saga import ClaimedRun as ClaimedRun
from ._saga import Codec as Codec
from ._saga import CompensationActionCompleted as CompensationActionCompleted
from ._saga import CompensationCompleted as CompensationCompleted
from ._saga import CompensationRegistered as CompensationRegistered
from ._saga import CompensationStarted as CompensationStarted
from ._saga import CompensationStepCompleted as CompensationStepCompleted
from ._saga import CompensationStepFailed as CompensationStepFailed
from ._saga import CompensationStepStarted as CompensationStepStarted
from ._saga import Fence as Fence
from ._saga import Journal as Journal
from ._saga import JournalEntry as JournalEntry
from ._saga import JournalError as JournalError
from ._saga import JournalSchemaError as JournalSchemaError
from ._saga import JournalWritten as JournalWritten
from ._saga import JSONCodec as JSONCodec
from ._saga import LeaseLostError as LeaseLostError
from ._saga import OnCrash as OnCrash
from ._saga import RecordedFailure as RecordedFailure
from ._saga import RecoveryReport as RecoveryReport
from ._saga import RunClaimedError as RunClaimedError
from ._saga import RunDamagedError as RunDamagedError
from ._saga import RunIdInUseError as RunIdInUseError
from ._saga import RunNotFoundError as RunNotFoundError
from ._saga import RunRecord as RunRecord
from ._saga import RunResumed as RunResumed
from ._saga import RunStatus as RunStatus
from ._saga import SagaEvent as SagaEvent
from ._saga import SagaResult as SagaResult
from ._saga import Scene as Scene
from ._saga import SceneCompleted as SceneCompleted
from ._saga import SceneFailed as SceneFailed
from ._saga import SceneStarted as SceneStarted
from ._saga import SkippedRun as SkippedRun
from ._saga import Uncertain as Uncertain
from ._saga import WorkerRecord as WorkerRecord
from ._saga import compensate_run as compensate_run
from ._saga import durable_undo as durable_undo
from ._saga import recover as recover
from ._saga import run_scene as run_scene
from ._saga import run_worker as run_worker
from ._timeline import Span as Span
from ._timeline import plot_timeline as plot_timeline
from ._timeline import render_timeline as render_timeline
from ._timeline import timeline_from_entries as timeline_from_entries
from ._timeline import timeline_spans as timeline_spans
from ._util import fixup_module_metadata as _fixup_module_metadata

try:
    __version__ = _version("trio-sagas")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = (
    "CHECK_FLOOR",
    "DEFAULT_COMPENSATION_RETRY",
    "DEFAULT_COMPENSATION_TIMEOUT",
    "DEFAULT_LEASE",
    "DEFAULT_MAX_CLAIMS",
    "HELD_ELSEWHERE",
    "Act",
    "ActCancelled",
    "ActCompleted",
    "ActFailed",
    "ActStarted",
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
    "Chorus",
    "ChorusCompleted",
    "ChorusFailed",
    "ChorusMode",
    "ChorusStarted",
    "ClaimedRun",
    "Classification",
    "Classified",
    "Classifier",
    "Codec",
    "CompensationActionCompleted",
    "CompensationCompleted",
    "CompensationPolicy",
    "CompensationRegistered",
    "CompensationReport",
    "CompensationScope",
    "CompensationStarted",
    "CompensationStepCompleted",
    "CompensationStepFailed",
    "CompensationStepStarted",
    "ErrGroup",
    "ErrGroupStatistics",
    "Event",
    "ExecutionMode",
    "Executor",
    "Fence",
    "FixedDelayTrigger",
    "GlobalTimeoutReached",
    "GroupCancelled",
    "GroupCompensationCompleted",
    "GroupCompensationStarted",
    "GroupTaskFinished",
    "HedgeCancelled",
    "HedgePolicy",
    "HedgeSpawned",
    "HedgeState",
    "HedgeTrigger",
    "Ignition",
    "IgnitionCompleted",
    "IgnitionPolicy",
    "IgnitionResult",
    "JSONCodec",
    "Journal",
    "JournalEntry",
    "JournalError",
    "JournalSchemaError",
    "JournalWritten",
    "LatencyTrigger",
    "LatencyWindow",
    "LeaseLostError",
    "LoggingObserver",
    "MergeStatistics",
    "MergedReceiveChannel",
    "MissingTrigger",
    "Observer",
    "OnCrash",
    "Outcome",
    "OutcomeError",
    "PostgresJournal",
    "RecordedFailure",
    "RecoveryReport",
    "ResultRejected",
    "RetryPolicy",
    "RetryScheduled",
    "RunClaimedError",
    "RunDamagedError",
    "RunIdInUseError",
    "RunNotFoundError",
    "RunRecord",
    "RunResumed",
    "RunStatus",
    "SQLiteJournal",
    "SagaError",
    "SagaEvent",
    "SagaResult",
    "Scene",
    "SceneCompleted",
    "SceneFailed",
    "SceneStarted",
    "SignalCompleted",
    "SignalStarted",
    "SkippedRun",
    "Span",
    "StagePolicy",
    "StageResult",
    "StageStarted",
    "Status",
    "StepContext",
    "TokenBucketBudget",
    "TokenBucketStatistics",
    "TriggerDecision",
    "TriggerMissing",
    "TriggerRegistry",
    "Uncertain",
    "WorkerRecord",
    "compensate_run",
    "durable_undo",
    "fan_in",
    "observers",
    "open_err_group",
    "open_merge",
    "plot_timeline",
    "recover",
    "render_timeline",
    "run_scene",
    "run_worker",
    "timeline_from_entries",
    "timeline_spans",
)

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
