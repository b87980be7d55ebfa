"""Several processes (hosts) on JAX's distributed runtime.

Every process runs the same command; :func:`initialize` (called first by
``python -m fmjax`` and ``python -m experiments.run``) joins them when the
environment names more than one process::

    JAX_COORDINATOR_ADDRESS=host0:12345   # process 0's address and a free port
    JAX_NUM_PROCESSES=2                   # how many processes in all
    JAX_PROCESS_ID=0                      # this process: 0 .. N-1

(Slurm, Open MPI and Cloud TPU set these up themselves: ``FMJAX_DISTRIBUTED=auto``
lets JAX detect them.) After it, :func:`fmjax.sharding.data_mesh` spans every
device of every process: each process computes its devices' share of every
batch and the reductions cross processes (NCCL on GPUs; on CPUs the gloo
collectives, which :func:`initialize` selects).

Only process 0 writes files (:func:`is_writer`): configs, metrics, summaries
and reports; every process runs the same steps and holds the same replicated
parameters.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import NamedTuple

import jax

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_COUNT = "JAX_NUM_PROCESSES"
ENV_ID = "JAX_PROCESS_ID"
ENV_AUTO = "FMJAX_DISTRIBUTED"


class Processes(NamedTuple):
  """What the environment asks for: ``count`` processes, this one ``pid``, joined at
  ``address`` (None: JAX detects them, ``FMJAX_DISTRIBUTED=auto``)."""
  count: int
  pid: int
  address: str | None


def _integer(name: str, low: int, high: int | None, fix: str) -> int:
  value = os.environ[name]
  try:
    number = int(value.strip())
  except ValueError:
    number = None
  if number is None or number < low or (high is not None and number > high):
    bound = f"{low}..{high}" if high is not None else f">= {low}"
    raise ValueError(f"{name}={value!r} must be an integer {bound}; {fix}")
  return number


def environment() -> Processes | None:
  """The processes the environment names, checked together; None for one process.

  The three variables are all set or none is (with ``FMJAX_DISTRIBUTED=auto`` none is
  needed); ``JAX_NUM_PROCESSES`` is an integer >= 1, ``JAX_PROCESS_ID`` one in 0..N-1 and
  ``JAX_COORDINATOR_ADDRESS`` a ``host:port`` with a port in 1..65535.

  Raises:
    ValueError: one line naming the variable that is wrong or missing, and the fix.
  """
  auto = os.environ.get(ENV_AUTO)
  if auto not in (None, "", "auto"):
    raise ValueError(f"{ENV_AUTO}={auto!r}: the only value is 'auto' (JAX detects Slurm, "
                     f"Open MPI or Cloud TPU); unset it to run one process or to name them "
                     f"with {ENV_ADDRESS}, {ENV_COUNT} and {ENV_ID}.")
  if auto == "auto":
    return Processes(0, 0, None)
  names = (ENV_ADDRESS, ENV_COUNT, ENV_ID)
  given = [n for n in names if os.environ.get(n, "").strip()]
  if not given:
    return None
  how = (f"set all three in every process ({ENV_ADDRESS}=host:port of process 0, "
         f"{ENV_COUNT}=N, {ENV_ID}=0..N-1), or none for one process.")
  missing = [n for n in names if n not in given]
  if missing:
    raise ValueError(f"{', '.join(given)} set but {', '.join(missing)} not: {how}")
  count = _integer(ENV_COUNT, 1, None, how)
  pid = _integer(ENV_ID, 0, count - 1, how)
  address = os.environ[ENV_ADDRESS].strip()
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise ValueError(f"{ENV_ADDRESS}={address!r} must be host:port with a port in 1..65535 "
                     "(process 0's address and a free port, e.g. 10.0.0.1:12345).")
  return None if count == 1 else Processes(count, pid, address)


def requested() -> bool:
  """Whether the environment asks for several processes (:func:`environment`)."""
  return environment() is not None


def initialize(timeout_s: int = 300) -> bool:
  """Joins the processes named by the environment (see the module docstring).

  Returns True when several processes were joined, False for a single process
  (nothing to do). Call it before any JAX computation. It says what it waits for, and
  gives up after ``timeout_s`` seconds with the address it could not reach.

  Raises:
    ValueError: the environment is incomplete or inconsistent (:func:`environment`), or
      the coordinator did not answer in time.
  """
  procs = environment()
  if procs is None:
    return False
  if jax.distributed.is_initialized():
    return True
  if procs.address is None:
    jax.distributed.initialize(initialization_timeout=timeout_s)
    return True
  # Cross-process collectives of CPU devices (GPUs use NCCL whatever this says).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  print(f"process {procs.pid} of {procs.count}: joining the coordinator at {procs.address} "
        f"(process 0; waiting up to {timeout_s} s for all {procs.count})", file=sys.stderr,
        flush=True)
  start = time.monotonic()
  if procs.pid != 0:   # JAX aborts the process when the coordinator never answers: probe it
    _wait_for_coordinator(procs, timeout_s)
  left = max(1, int(timeout_s - (time.monotonic() - start)))
  jax.distributed.initialize(coordinator_address=procs.address, num_processes=procs.count,
                             process_id=procs.pid, initialization_timeout=left)
  return True


def _wait_for_coordinator(procs: Processes, timeout_s: float) -> None:
  """Until process 0's port accepts a connection, or a clear error after ``timeout_s``."""
  host, _, port = procs.address.rpartition(":")
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
      return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise ValueError(
            f"process {procs.pid} of {procs.count} could not reach the coordinator at "
            f"{procs.address} within {timeout_s:g} s ({e.strerror or e}); start process 0 "
            f"with the same {ENV_ADDRESS} and {ENV_COUNT}, and check that the host and port "
            "are reachable from here.") from None
      time.sleep(0.5)


def is_writer() -> bool:
  """True in the one process that writes files (process 0; the only one alone)."""
  return jax.process_index() == 0
