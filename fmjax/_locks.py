"""One writer per work directory: an exclusive ``fcntl.flock`` held for the run.

:func:`fmjax.checkpoints.claim_workdir` takes it; ``train``, ``unlearn`` and the experiment
runner release it when they return.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from fmjax import distributed

LOCK_FILE = ".lock"
_held: dict[pathlib.Path, Any] = {}   # work directories this process holds: open lock files


def lock_workdir(workdir: str | pathlib.Path) -> None:
  """Holds ``workdir`` for this process until it exits (or :func:`release_workdir`).

  One writer per work directory: an exclusive ``fcntl.flock`` on ``workdir/.lock``,
  which holds the holder's pid. The kernel drops the lock when its process dies, however
  it dies, so a killed run leaves no stale lock: the next run takes it over at once (the
  old pid in the file is only overwritten). With several processes only process 0 takes
  it (they all write through it). Taking a directory this process holds is a no-op.

  Raises:
    ValueError: another process holds it (its pid, and what to do).
  """
  import fcntl

  workdir = pathlib.Path(workdir).resolve()
  if workdir in _held or not distributed.is_writer():
    return
  f = open(workdir / LOCK_FILE, "a+")   # noqa: SIM115 -- held open for the run
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.seek(0)
    holder = f.read().strip() or "unknown"
    f.close()
    raise ValueError(f"{workdir} is in use by another run (pid {holder}); wait for it to "
                     "finish, or stop it, or give this run another --workdir.") from None
  f.seek(0)
  f.truncate()
  f.write(f"{os.getpid()}\n")
  f.flush()
  _held[workdir] = f


def release_workdir(workdir: str | pathlib.Path) -> None:
  """Lets another process take ``workdir`` (:func:`lock_workdir`); a no-op if not held."""
  f = _held.pop(pathlib.Path(workdir).resolve(), None)
  if f is not None:
    f.close()   # closing the file drops the flock
