"""Named crash points, for tests that kill a run at a chosen moment.

Set ``FMJAX_CRASH_AT`` to a point's name and the process kills itself with
SIGKILL when it reaches that point, as ``kill -9`` or a power cut would: no
handler, no flush, no cleanup. Points are named ``<phase>.<what>.<numbers>``,
e.g. ``train.step.3.2`` (epoch 3, after its step index 2) or
``train.epoch.3`` (after epoch 3 is committed). Unset, a point costs one
string comparison.
"""

from __future__ import annotations

import os
import signal

ENV = "FMJAX_CRASH_AT"


def crash_point(name: str) -> None:
  """Kills this process with SIGKILL if ``$FMJAX_CRASH_AT`` names this point."""
  if os.environ.get(ENV) == name:
    os.kill(os.getpid(), signal.SIGKILL)
