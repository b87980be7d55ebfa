"""What every benchmark script shares: JSON-lines output and median timing."""

from __future__ import annotations

import json
import statistics
import time

import jax


def emit(record: dict) -> None:
  """One JSON object per line (compare runs with jq or pandas)."""
  print(json.dumps(record), flush=True)


def timed(fn, reps: int) -> float:
  """Median wall time of ``fn()`` over ``reps`` runs after one warm-up run."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)
