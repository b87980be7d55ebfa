"""Small CNNs for 28x28 and 8x8 digit-like inputs: two conv-BN-ReLU-pool stages, a
hidden Dense layer, the classifier. ``small_cnn``: 32 and 64 channels, 128 hidden units;
``tiny_cnn``: half the channels (16 and 32), about 2.7x cheaper a step (what an
ensemble of hundreds of models on a CPU can afford, :mod:`experiments.privacy`)."""

from __future__ import annotations

import flax.linen as nn

from fmjax.models._layers import batch_norm, conv_init, max_pool_2x2


class SmallCNN(nn.Module):
  """Input [B, H, W, C] -> logits [B, num_classes]."""
  num_classes: int = 10
  widths: tuple[int, int] = (32, 64)
  hidden: int = 128

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (3, 3), padding=1, use_bias=False, kernel_init=conv_init,
                  name=f"conv{i + 1}")(x)
      x = max_pool_2x2(nn.relu(batch_norm(train, f"bn{i + 1}")(x)))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
    return nn.Dense(self.num_classes, name="classifier")(x)


def small_cnn(num_classes: int = 10) -> SmallCNN:
  return SmallCNN(num_classes=num_classes)


def tiny_cnn(num_classes: int = 10) -> SmallCNN:
  return SmallCNN(num_classes=num_classes, widths=(16, 32))
