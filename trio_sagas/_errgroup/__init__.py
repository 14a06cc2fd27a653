"""Error groups: the first failure cancels peers, then compensation runs once."""

from __future__ import annotations

from ._events import ErrGroupStatistics as ErrGroupStatistics
from ._events import GroupCancelled as GroupCancelled
from ._events import GroupCompensationCompleted as GroupCompensationCompleted
from ._events import GroupCompensationStarted as GroupCompensationStarted
from ._events import GroupTaskFinished as GroupTaskFinished
from ._group import BODY as BODY
from ._group import ErrGroup as ErrGroup
from ._open import open_err_group as open_err_group
