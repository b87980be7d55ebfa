"""VGG16 with BatchNorm, CIFAR variant (Simonyan & Zisserman 2015; the common
CIFAR port): thirteen 3x3 conv-BN-ReLU layers in five stages with max pooling,
then one Dense layer on the 512 pooled features."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fmjax.models._layers import batch_norm, max_pool_2x2

VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(nn.Module):
  """Input [B, H, W, C] -> logits [B, num_classes]. Pooling stops at 1x1, so
  28x28 and 8x8 inputs work too; for 32x32 it is the usual CIFAR VGG16."""
  num_classes: int = 10
  stages: tuple = VGG16_STAGES

  @nn.compact
  def __call__(self, x, train: bool = False):
    for s, widths in enumerate(self.stages):
      for i, width in enumerate(widths):
        x = nn.Conv(width, (3, 3), padding=1, name=f"conv{s + 1}_{i + 1}")(x)
        x = nn.relu(batch_norm(train, f"bn{s + 1}_{i + 1}")(x))
      x = max_pool_2x2(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="classifier")(x)


def vgg16(num_classes: int = 10) -> VGG:
  return VGG(num_classes=num_classes)
