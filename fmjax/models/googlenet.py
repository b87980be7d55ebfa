"""GoogLeNet, CIFAR variant (Szegedy et al. 2015; the common CIFAR port): a 3x3
stem with 192 channels, Inception modules 3a-5b, no auxiliary heads."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fmjax.models._layers import batch_norm

# (1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3, pool projection)
INCEPTION = {
    "a3": (64, 96, 128, 16, 32, 32), "b3": (128, 128, 192, 32, 96, 64),
    "a4": (192, 96, 208, 16, 48, 64), "b4": (160, 112, 224, 24, 64, 64),
    "c4": (128, 128, 256, 24, 64, 64), "d4": (112, 144, 288, 32, 64, 64),
    "e4": (256, 160, 320, 32, 128, 128),
    "a5": (256, 160, 320, 32, 128, 128), "b5": (384, 192, 384, 48, 128, 128),
}


class ConvBN(nn.Module):
  features: int
  kernel: int

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (self.kernel, self.kernel), padding=self.kernel // 2)(x)
    return nn.relu(batch_norm(train)(x))


class Inception(nn.Module):
  widths: tuple

  @nn.compact
  def __call__(self, x, train: bool):
    n1, r3, n3, r5, n5, pool = self.widths
    b1 = ConvBN(n1, 1)(x, train)
    b2 = ConvBN(n3, 3)(ConvBN(r3, 1)(x, train), train)
    b3 = ConvBN(n5, 3)(ConvBN(n5, 3)(ConvBN(r5, 1)(x, train), train), train)
    b4 = ConvBN(pool, 1)(nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))), train)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


def _pool(x):
  if min(x.shape[1:3]) < 2:
    return x
  return nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))


class GoogLeNet(nn.Module):
  """Input [B, H, W, C] -> logits [B, num_classes]."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = ConvBN(192, 3, name="stem")(x, train)
    for name in ("a3", "b3"):
      x = Inception(INCEPTION[name], name=f"inception_{name}")(x, train)
    x = _pool(x)
    for name in ("a4", "b4", "c4", "d4", "e4"):
      x = Inception(INCEPTION[name], name=f"inception_{name}")(x, train)
    x = _pool(x)
    for name in ("a5", "b5"):
      x = Inception(INCEPTION[name], name=f"inception_{name}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="classifier")(x)


def googlenet(num_classes: int = 10) -> GoogLeNet:
  return GoogLeNet(num_classes=num_classes)
