"""Layers shared by the models: PyTorch-default BatchNorm, conv init, pooling."""

from __future__ import annotations

import flax.linen as nn
import jax

# PyTorch's kaiming_normal_ (fan_in, gain sqrt(2)), as in the reference CIFAR models.
conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2/2 max pooling; skipped once the spatial size is 1 (small inputs)."""
  if min(x.shape[1:3]) < 2:
    return x
  return nn.max_pool(x, (2, 2), strides=(2, 2))
