"""Layers shared by the models: PyTorch-default BatchNorm, conv init, pooling."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax

# PyTorch's kaiming_normal_ (fan_in, gain sqrt(2)), as in the reference CIFAR models.
conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def batch_norm(train: bool | jax.Array, name: str | None = None) -> Callable[[jax.Array],
                                                                          jax.Array]:
  """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5).

  ``train`` is False (running statistics), True (batch statistics, running
  statistics updated), or a boolean [B] mask: training mode with the batch
  statistics over the True examples only (a batch padded for several devices,
  :func:`fmjax.sharding.shard_examples`).
  """
  if isinstance(train, bool):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)
  bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5, name=name)
  return lambda x: bn(x, mask=train.reshape((-1,) + (1,) * (x.ndim - 1)))


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2/2 max pooling; skipped once the spatial size is 1 (small inputs)."""
  if min(x.shape[1:3]) < 2:
    return x
  return nn.max_pool(x, (2, 2), strides=(2, 2))
