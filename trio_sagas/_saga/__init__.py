"""The saga runner (Scene / Act / Chorus) and its events."""

from __future__ import annotations

from ._events import (
    ActCancelled,
    ActCompleted,
    ActFailed,
    ActStarted,
    ChorusCompleted,
    ChorusFailed,
    ChorusStarted,
    CompensationCompleted,
    CompensationStarted,
    CompensationStepCompleted,
    CompensationStepFailed,
    CompensationStepStarted,
    SagaEvent,
    SceneCompleted,
    SceneFailed,
    SceneStarted,
)
from ._model import DEFAULT_COMPENSATION_RETRY, Act, Chorus, ChorusMode, Scene
from ._runner import SagaResult, run_scene

__all__ = [
    "DEFAULT_COMPENSATION_RETRY",
    "Act",
    "ActCancelled",
    "ActCompleted",
    "ActFailed",
    "ActStarted",
    "Chorus",
    "ChorusCompleted",
    "ChorusFailed",
    "ChorusMode",
    "ChorusStarted",
    "CompensationCompleted",
    "CompensationStarted",
    "CompensationStepCompleted",
    "CompensationStepFailed",
    "CompensationStepStarted",
    "SagaEvent",
    "SagaResult",
    "Scene",
    "SceneCompleted",
    "SceneFailed",
    "SceneStarted",
    "run_scene",
]
