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
from ._compensation import StepContext as StepContext
from ._errgroup import ErrGroup as ErrGroup
from ._errgroup import ErrGroupStatistics as ErrGroupStatistics
from ._errgroup import GroupCancelled as GroupCancelled
from ._errgroup import GroupCompensationCompleted as GroupCompensationCompleted
from ._errgroup import GroupCompensationStarted as GroupCompensationStarted
from ._errgroup import GroupTaskFinished as GroupTaskFinished
from ._errgroup import open_err_group as open_err_group
from ._events import Event as Event
from ._events import Observer as Observer
from ._fanin import MergedReceiveChannel as MergedReceiveChannel
from ._fanin import MergeStatistics as MergeStatistics
from ._fanin import fan_in as fan_in
from ._fanin import open_merge as open_merge
from ._journal import SQLiteJournal as SQLiteJournal
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
from ._saga import DEFAULT_COMPENSATION_RETRY as DEFAULT_COMPENSATION_RETRY
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
from ._saga import Codec as Codec
from ._saga import CompensationCompleted as CompensationCompleted
from ._saga import CompensationStarted as CompensationStarted
from ._saga import CompensationStepCompleted as CompensationStepCompleted
from ._saga import CompensationStepFailed as CompensationStepFailed
from ._saga import CompensationStepStarted as CompensationStepStarted
from ._saga import Journal as Journal
from ._saga import JournalEntry as JournalEntry
from ._saga import JournalError as JournalError
from ._saga import JournalSchemaError as JournalSchemaError
from ._saga import JSONCodec as JSONCodec
from ._saga import RecordedFailure as RecordedFailure
from ._saga import RecoveryReport as RecoveryReport
from ._saga import RunClaimedError as RunClaimedError
from ._saga import RunIdInUseError as RunIdInUseError
from ._saga import RunNotFoundError as RunNotFoundError
from ._saga import RunRecord as RunRecord
from ._saga import RunStatus as RunStatus
from ._saga import SagaEvent as SagaEvent
from ._saga import SagaResult as SagaResult
from ._saga import Scene as Scene
from ._saga import SceneCompleted as SceneCompleted
from ._saga import SceneFailed as SceneFailed
from ._saga import SceneStarted as SceneStarted
from ._saga import SkippedRun as SkippedRun
from ._saga import compensate_run as compensate_run
from ._saga import recover as recover
from ._saga import run_scene as run_scene
from ._util import fixup_module_metadata as _fixup_module_metadata

try:
    __version__ = _version("trio-sagas")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = (
    "DEFAULT_COMPENSATION_RETRY",
    "DEFAULT_COMPENSATION_TIMEOUT",
    "Act",
    "ActCancelled",
    "ActCompleted",
    "ActFailed",
    "ActStarted",
    "Budget",
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
    "Classification",
    "Classified",
    "Codec",
    "CompensationCompleted",
    "CompensationPolicy",
    "CompensationReport",
    "CompensationScope",
    "CompensationStarted",
    "CompensationStepCompleted",
    "CompensationStepFailed",
    "CompensationStepStarted",
    "ErrGroup",
    "ErrGroupStatistics",
    "Event",
    "GroupCancelled",
    "GroupCompensationCompleted",
    "GroupCompensationStarted",
    "GroupTaskFinished",
    "HedgePolicy",
    "JSONCodec",
    "Journal",
    "JournalEntry",
    "JournalError",
    "JournalSchemaError",
    "MergeStatistics",
    "MergedReceiveChannel",
    "MissingTrigger",
    "Observer",
    "Outcome",
    "OutcomeError",
    "RecordedFailure",
    "RecoveryReport",
    "RetryPolicy",
    "RunClaimedError",
    "RunIdInUseError",
    "RunNotFoundError",
    "RunRecord",
    "RunStatus",
    "SQLiteJournal",
    "SagaError",
    "SagaEvent",
    "SagaResult",
    "Scene",
    "SceneCompleted",
    "SceneFailed",
    "SceneStarted",
    "SkippedRun",
    "Status",
    "StepContext",
    "compensate_run",
    "fan_in",
    "open_err_group",
    "open_merge",
    "recover",
    "run_scene",
)

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
