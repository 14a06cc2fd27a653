"""Retry policies, the attempt records every retrying component reports, and
the simple retry loop compensations and saga acts use."""

from __future__ import annotations

from ._loop import ResultRejected as ResultRejected
from ._loop import run_attempts as run_attempts
from ._policy import BUDGET_DENIED as BUDGET_DENIED
from ._policy import BUDGET_ERROR as BUDGET_ERROR
from ._policy import CLASSIFIER_ERROR as CLASSIFIER_ERROR
from ._policy import Budget as Budget
from ._policy import BudgetKind as BudgetKind
from ._policy import Classification as Classification
from ._policy import Classified as Classified
from ._policy import Classifier as Classifier
from ._policy import HedgePolicy as HedgePolicy
from ._policy import MissingTrigger as MissingTrigger
from ._policy import RetryPolicy as RetryPolicy
from ._policy import Verdict as Verdict
from ._policy import acquire as acquire
from ._policy import classify as classify
from ._policy import default_classifier as default_classifier
from ._policy import default_verdict as default_verdict
from ._records import AttemptInfo as AttemptInfo
from ._records import AttemptRecord as AttemptRecord
from ._records import attempt_record as attempt_record
