"""Data parallelism on JAX's own runtime: one mesh helper for every phase.

``data_mesh(devices)`` is a one-axis :class:`jax.sharding.Mesh` named
``'data'`` over the devices fmjax may use: by default all of them (every
local device; with several processes, every device of every process). Every
phase uses it the same way:

* **What is sharded**: the examples of a batch, along ``'data'``. Each device
  computes its share; each process holds only its devices' shares.
* **What is replicated**: parameters, model state, optimiser state, and the
  training images (uint8, put on the devices once per run: a batch is a
  random subset of ALL examples, so every device gathers its share of the
  batch from its own copy without any transfer or host copy per step).
* **How results are reduced**: training, fine-tuning, evaluation and the
  scoring passes are plain ``jax.jit`` programs whose inputs carry these
  shardings; XLA inserts the reductions (the gradient of a mean loss over a
  sharded batch is all-reduced, BatchNorm's batch statistics are computed
  over the whole batch). The Fisher pass runs under :func:`jax.shard_map`:
  each device sums its examples' squared gradients and the per-device sums
  are reduced exactly once (``psum``).

**Padding.** A batch whose size does not divide by the device count is padded
with zero-weight examples (:func:`shard_examples`): they add nothing to a
loss, a gradient, an accuracy or a sum, and nothing is dropped or repeated.
In training mode the weight also masks **BatchNorm**: its batch mean and
variance (and hence the running statistics) are computed over the real
examples only (``train`` is then a boolean [B] mask, see
:mod:`fmjax.models`), so a padded step equals the unpadded step on one
device. Per-example outputs of a padded batch are cut back to the real
examples.

**One device.** With a single device no program changes: ``mesh_or_none``
returns None and every phase runs exactly its single-device program, so
results on one device are bit-identical to fmjax without a mesh. On N
devices results agree with one device up to the order of floating-point
sums (relative 1e-6 for the Fisher, 1e-5 after ten training steps; tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def data_mesh(devices: int | None = None) -> Mesh:
  """A 1-D mesh ``('data',)`` over the devices fmjax may use.

  Args:
    devices: how many devices to use; None = all of them. With several
      processes (:mod:`fmjax.distributed`) the mesh spans every device of
      every process, so ``devices`` must be None or that total (or 1: this
      process's first device alone, e.g. for a reference computation).

  Raises:
    ValueError: ``devices`` is not between 1 and the number of devices.
  """
  pool = jax.devices() if jax.process_count() > 1 else jax.local_devices()
  n = len(pool) if devices is None else devices
  if not (isinstance(n, int | np.integer) and not isinstance(n, bool) and 1 <= n <= len(pool)):
    raise ValueError(f"devices must be an integer in 1..{len(pool)} (this process sees "
                     f"{len(pool)} {pool[0].platform} device(s)), got {devices!r}.")
  if jax.process_count() > 1 and n not in (1, len(pool)):
    raise ValueError(f"with {jax.process_count()} processes the mesh spans all {len(pool)} "
                     f"devices (or 1: this process's first device alone); got devices={n}. "
                     "Leave --devices out.")
  if n == 1:
    pool = jax.local_devices()
  return Mesh(np.asarray(pool[:int(n)]), (AXIS,))


def as_mesh(devices: int | Mesh | None) -> Mesh:
  """``devices`` as a mesh: a count (None = all) through :func:`data_mesh`, or a mesh."""
  return devices if isinstance(devices, Mesh) else data_mesh(devices)


def mesh_or_none(devices: int | Mesh | None) -> Mesh | None:
  """The mesh of ``devices`` (a count, a mesh, or None = all), or None when it
  has a single device (then every phase runs its single-device program)."""
  mesh = as_mesh(devices)
  return mesh if mesh.size > 1 else None


def padded_size(size: int, devices: int) -> int:
  """The smallest multiple of ``devices`` that is >= ``size``."""
  return -(-size // devices) * devices


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, P())


def sharded(mesh: Mesh) -> NamedSharding:
  """The leading (example) axis split across ``'data'``."""
  return NamedSharding(mesh, P(AXIS))


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
  """``x`` (host or device, the same value in every process) placed with ``sharding``."""
  if getattr(x, "sharding", None) == sharding:
    return x
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  host = np.asarray(jax.device_get(x)) if isinstance(x, jax.Array) else np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put_sharded(x: Any, mesh: Mesh) -> jax.Array:
  """``x`` (the same value in every process) split along its leading axis,
  which must divide by the device count."""
  return _put(x, sharded(mesh))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
  """Every array of ``tree`` on every device of ``mesh`` (unchanged when None)."""
  if mesh is None:
    return tree
  return jax.tree.map(lambda x: _put(x, replicated(mesh)), tree)


def _pad_examples(batch: Mapping[str, Any], devices: int, xp: Any) -> dict:
  """``batch`` with every leading axis padded by zeros to a multiple of ``devices``
  and, only when it pads, ``'weight'`` (float32: 1 real, 0 padding). ``xp`` is numpy
  (on the host) or jax.numpy (inside jit)."""
  batch = dict(batch)
  size = len(next(iter(batch.values())))
  extra = padded_size(size, devices) - size
  if extra:
    batch = {k: xp.concatenate([v, xp.zeros((extra,) + v.shape[1:], v.dtype)])
             for k, v in batch.items()}
    batch["weight"] = xp.concatenate([xp.ones((size,), xp.float32),
                                      xp.zeros((extra,), xp.float32)])
  return batch


def shard_examples(batch: Mapping[str, Any], mesh: Mesh | None) -> dict:
  """Inside ``jit``: a batch split along its examples across ``mesh``.

  Pads every array's leading axis to a multiple of the device count with
  zeros and, only when it pads, adds ``'weight'`` (float32 [B']: 1 for a real
  example, 0 for padding). Unchanged when ``mesh`` is None.

  Shapes: ``{k: [B, ...]}`` -> ``{k: [B', ...], ('weight': [B'])}``.
  """
  if mesh is None:
    return dict(batch)
  return jax.lax.with_sharding_constraint(_pad_examples(batch, mesh.size, jnp), sharded(mesh))


def host_batch(batch: Mapping[str, Any], mesh: Mesh | None) -> dict:
  """Outside ``jit``: a host batch padded like :func:`shard_examples` and put
  on the devices, each process placing only its devices' shares."""
  batch = {k: np.asarray(v) for k, v in batch.items()}
  if mesh is None:
    return {k: jnp.asarray(v) for k, v in batch.items()}
  return {k: _put(v, sharded(mesh)) for k, v in _pad_examples(batch, mesh.size, np).items()}


def to_host(x: Any) -> Any:
  """A (possibly sharded, possibly multi-process) array tree as numpy on this host."""
  def one(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)
  return jax.tree.map(one, x)


def real_size(batch: Mapping[str, Any]) -> int:
  """How many real (non-padding) examples ``batch`` holds: its leading rows."""
  weight = batch.get("weight")
  if weight is None:
    return len(batch["label"])
  return int(np.sum(to_host(weight) > 0))


def real_rows(tree: Any, batch: Mapping[str, Any]) -> Any:
  """Per-example outputs of ``batch`` (a tree of [B', ...] arrays) as numpy on this host,
  cut to the batch's real examples (:func:`real_size`)."""
  n = real_size(batch)
  return jax.tree.map(lambda a: a[:n], to_host(tree))


def example_weight(batch: Mapping[str, Any]) -> jax.Array | None:
  """The batch's example weights ([B], 0 = padding), or None when it has no padding."""
  return batch.get("weight")


def bn_mode(batch: Mapping[str, Any]) -> bool | jax.Array:
  """The models' ``train`` argument in training mode: True, or, for a padded
  batch, the boolean mask of its real examples (BatchNorm statistics over them)."""
  weight = example_weight(batch)
  return True if weight is None else weight > 0


def weighted_mean(values: jax.Array, weight: jax.Array | None) -> jax.Array:
  """``mean(values)``, or ``sum(w * values) / sum(w)`` over a padded batch. [B] -> []."""
  if weight is None:
    return values.mean()
  return jnp.sum(values * weight) / jnp.sum(weight)
