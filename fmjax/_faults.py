"""Named crash points, for tests that kill a run at a chosen moment.

Set ``FMJAX_CRASH_AT`` to a point's name and the process kills itself with
SIGKILL when it reaches that point, as ``kill -9`` or a power cut would: no
handler, no flush, no cleanup. ``name#k`` kills at the k-th time the point
is reached (e.g. in the second unit of an experiment). Points are named
``<phase>.<what>[.<numbers>]``:

* ``train.step.<epoch>.<i>`` after step i of an epoch; ``train.before_commit.<epoch>``
  after its evaluation; ``train.epoch.<epoch>`` after its commit;
* ``unlearn.before_commit.<epoch>`` and ``unlearn.epoch.<epoch>`` likewise
  (epoch 0 is the edit), ``unlearn.relearn`` after the relearn record,
  ``unlearn.confidences`` after confidences.npz and its record,
  ``unlearn.summary`` after summary.json.

``FMJAX_PAUSE_AT`` names a point where the process instead stops (sleeps until it is
killed), saying so on stderr, so a test can act while the run is alive (a second run on
its work directory) and then kill it.

Unset, a point costs two environment look-ups.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import time

ENV = "FMJAX_CRASH_AT"
PAUSE_ENV = "FMJAX_PAUSE_AT"
_reached: collections.Counter[str] = collections.Counter()


def crash_point(name: str) -> None:
  """Kills this process with SIGKILL if ``$FMJAX_CRASH_AT`` names this point (stops it if
  ``$FMJAX_PAUSE_AT`` does)."""
  if os.environ.get(PAUSE_ENV) == name:
    print(f"paused at {name} (pid {os.getpid()})", file=sys.stderr, flush=True)
    while True:
      time.sleep(60)
  spec = os.environ.get(ENV)
  if not spec:
    return
  target, _, nth = spec.partition("#")
  if target != name:
    return
  _reached[name] += 1
  if _reached[name] == int(nth or 1):
    os.kill(os.getpid(), signal.SIGKILL)
