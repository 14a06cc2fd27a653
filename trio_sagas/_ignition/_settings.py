"""The validated, frozen configuration of one :class:`Ignition`.

:class:`Settings` holds every constructor argument once it passed its check
(all checks come from :mod:`trio_sagas._validate`), so the run reads a plain
record and never the coordinator's private attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .._events import Emitter, Observer
from .._validate import (
    attrs_validator,
    check_bool,
    check_enum,
    check_fraction,
    check_optional_int,
    check_sync_callable,
    check_sync_observer,
    check_timeout,
    describe_callable,
)
from ._records import ExecutionMode, IgnitionPolicy, PolicyCallable, StagePolicy


def _check_policy(instance: object, attribute: Any, value: Any) -> None:
    if isinstance(value, IgnitionPolicy):
        return
    if not callable(value):
        choices = ", ".join(f"IgnitionPolicy.{m.name}" for m in IgnitionPolicy)
        raise TypeError(
            f"policy must be one of {choices} or a sync callable, got {value!r}"
        )
    check_sync_callable(value, "policy")


def _check_enum(enum_type: type[Any]) -> Any:
    def validator(instance: object, attribute: Any, value: object) -> None:
        check_enum(value, enum_type, attribute.name)

    return validator


def _check_observer(instance: object, attribute: Any, value: Any) -> None:
    check_sync_observer(value, attribute.name)


@attrs.frozen(kw_only=True)
class Settings:
    """Everything an :class:`Ignition` was configured with, validated once.

    Attributes mirror the constructor's keyword arguments; ``emit`` is the
    :class:`~trio_sagas._events.Emitter` built once from ``observer``.
    """

    mode: ExecutionMode = attrs.field(validator=_check_enum(ExecutionMode))
    policy: IgnitionPolicy | PolicyCallable = attrs.field(validator=_check_policy)
    # None is "no limit", so infinity is refused rather than a second spelling.
    global_timeout: float | None = attrs.field(
        validator=attrs_validator(check_timeout, allow_zero=False, allow_inf=False)
    )
    cancel_on_global_timeout: bool = attrs.field(validator=attrs_validator(check_bool))
    cancel_individual_on_timeout: bool = attrs.field(
        validator=attrs_validator(check_bool)
    )
    cancel_dependents_on_failure: bool = attrs.field(
        validator=attrs_validator(check_bool)
    )
    max_parallelism: int | None = attrs.field(
        validator=attrs_validator(check_optional_int, minimum=1)
    )
    stage_policy: StagePolicy = attrs.field(validator=_check_enum(StagePolicy))
    early_promotion_threshold: float = attrs.field(
        validator=attrs_validator(check_fraction, allow_zero=False)
    )
    observer: Observer | Sequence[Observer] | None = attrs.field(
        validator=_check_observer
    )
    emit: Emitter = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Validators ran first: the observer is None, a sync callable or a
        # sequence of them.
        object.__setattr__(self, "emit", Emitter(self.observer))


def policy_name(policy: IgnitionPolicy | PolicyCallable) -> str:
    """``IgnitionPolicy.FAIL_FAST`` or ``policy <name>``, for messages."""
    if isinstance(policy, IgnitionPolicy):
        return f"IgnitionPolicy.{policy.name}"
    return f"policy {describe_callable(policy)}"
