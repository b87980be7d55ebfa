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

import jax

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_COUNT = "JAX_NUM_PROCESSES"
ENV_ID = "JAX_PROCESS_ID"
ENV_AUTO = "FMJAX_DISTRIBUTED"


def requested() -> bool:
  """Whether the environment asks for several processes."""
  return (os.environ.get(ENV_AUTO) == "auto"
          or int(os.environ.get(ENV_COUNT, "1") or "1") > 1)


def initialize(timeout_s: int = 300) -> bool:
  """Joins the processes named by the environment (see the module docstring).

  Returns True when several processes were joined, False for a single process
  (nothing to do). Call it before any JAX computation.

  Raises:
    ValueError: the environment is incomplete or inconsistent (what is
      missing and how to set it).
  """
  if not requested():
    return False
  if jax.distributed.is_initialized():
    return True
  if os.environ.get(ENV_AUTO) == "auto":
    jax.distributed.initialize(initialization_timeout=timeout_s)
  else:
    missing = [k for k in (ENV_ADDRESS, ENV_ID) if not os.environ.get(k)]
    if missing:
      raise ValueError(f"{ENV_COUNT}={os.environ[ENV_COUNT]} asks for several processes but "
                       f"{', '.join(missing)} is not set; set {ENV_ADDRESS}=host:port (process "
                       f"0's address) and {ENV_ID}=0..{int(os.environ[ENV_COUNT]) - 1} in every "
                       "process.")
    count, pid = int(os.environ[ENV_COUNT]), int(os.environ[ENV_ID])
    if not 0 <= pid < count:
      raise ValueError(f"{ENV_ID} must be in 0..{count - 1}, got {pid}.")
    # Cross-process collectives of CPU devices (GPUs use NCCL whatever this says).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=os.environ[ENV_ADDRESS],
                               num_processes=count, process_id=pid,
                               initialization_timeout=timeout_s)
  return True


def is_writer() -> bool:
  """True in the one process that writes files (process 0; the only one alone)."""
  return jax.process_index() == 0
