"""Data parallelism on JAX's own runtime: one mesh helper for every phase.

``data_mesh(devices)`` is a one-axis :class:`jax.sharding.Mesh` named
``'data'`` over the first ``devices`` local devices (default: all of them).
A phase that sums over examples (a Fisher pass) runs under
:func:`jax.shard_map`: every device sums its share of a block, and the
per-device sums are reduced exactly once (``psum`` over ``'data'``).
Parameters and model state are replicated. A block whose size does not
divide by the device count is padded with zero-weight examples, which add
nothing to any sum and are never counted.

On a single device nothing changes: the phase runs the same program as
without a mesh, so results on one device are bit-identical to fmjax's
single-device path.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

AXIS = "data"


def data_mesh(devices: int | None = None) -> Mesh:
  """A 1-D mesh ``('data',)`` over the first ``devices`` local devices.

  Args:
    devices: how many local devices to use; None = all of them.

  Raises:
    ValueError: ``devices`` is not between 1 and the number of local devices.
  """
  local = jax.local_devices()
  n = len(local) if devices is None else devices
  if not (isinstance(n, int | np.integer) and 1 <= n <= len(local)):
    raise ValueError(f"devices must be an integer in 1..{len(local)} (this process sees "
                     f"{len(local)} {local[0].platform} device(s)), got {devices!r}.")
  return Mesh(np.asarray(local[:int(n)]), (AXIS,))


def padded_size(size: int, devices: int) -> int:
  """The smallest multiple of ``devices`` that is >= ``size``."""
  return -(-size // devices) * devices
