"""Ignition: coordinate startup signals over the cancellation tree (layer 4)."""

from __future__ import annotations

from ._coordinator import Ignition as Ignition
from ._records import ExecutionMode as ExecutionMode
from ._records import GlobalTimeoutReached as GlobalTimeoutReached
from ._records import IgnitionCompleted as IgnitionCompleted
from ._records import IgnitionPolicy as IgnitionPolicy
from ._records import IgnitionResult as IgnitionResult
from ._records import PolicyCallable as PolicyCallable
from ._records import SignalCompleted as SignalCompleted
from ._records import SignalStarted as SignalStarted
from ._records import StagePolicy as StagePolicy
from ._records import StageResult as StageResult
from ._records import StageStarted as StageStarted
