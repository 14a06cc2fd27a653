"""``python -m trio_sagas``: the ``trio-sagas`` command line."""

from __future__ import annotations

from ._cli import run

if __name__ == "__main__":
    run()
