"""DenseNet, CIFAR variant (Huang et al. 2017): bottleneck dense blocks of
[6, 12, 24, 16] layers, growth rate 12, compression 0.5 (the CIFAR port
``densenet_cifar`` that the paper's public code uses)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fmjax.models._layers import batch_norm, conv_init


class DenseLayer(nn.Module):
  """BN-ReLU-1x1 conv (4k) - BN-ReLU-3x3 conv (k), concatenated to the input."""
  growth: int

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.Conv(4 * self.growth, (1, 1), use_bias=False, kernel_init=conv_init)(
        nn.relu(batch_norm(train)(x)))
    y = nn.Conv(self.growth, (3, 3), padding=1, use_bias=False, kernel_init=conv_init)(
        nn.relu(batch_norm(train)(y)))
    return jnp.concatenate([y, x], axis=-1)


class Transition(nn.Module):
  """BN-ReLU-1x1 conv to ``features`` channels, then 2x2 average pooling."""
  features: int

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=conv_init)(
        nn.relu(batch_norm(train)(x)))
    return nn.avg_pool(x, (2, 2), (2, 2)) if min(x.shape[1:3]) >= 2 else x


class DenseNet(nn.Module):
  """Input [B, H, W, C] -> logits [B, num_classes]."""
  num_classes: int = 10
  blocks: tuple = (6, 12, 24, 16)
  growth: int = 12
  reduction: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    channels = 2 * self.growth
    x = nn.Conv(channels, (3, 3), padding=1, use_bias=False, kernel_init=conv_init,
                name="stem")(x)
    for b, layers in enumerate(self.blocks):
      for i in range(layers):
        x = DenseLayer(self.growth, name=f"block{b + 1}_layer{i + 1}")(x, train)
      channels += layers * self.growth
      if b < len(self.blocks) - 1:
        channels = int(channels * self.reduction)
        x = Transition(channels, name=f"transition{b + 1}")(x, train)
    x = nn.relu(batch_norm(train, "bn_final")(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="classifier")(x)


def densenet(num_classes: int = 10) -> DenseNet:
  return DenseNet(num_classes=num_classes)
