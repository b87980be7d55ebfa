"""CIFAR-style ResNets: He et al. 2016's 6n+2-layer nets, and ResNet-18 in its CIFAR form.

ResNet20 is n=3, the paper's "ResNet50" is n=8 (its public code's CIFAR ResNet,
not ImageNet's bottleneck ResNet-50). Stages have 16/32/64 channels; the
shortcut where shape changes is He et al.'s option A (stride-2 subsampling and
zero-padded channels, no parameters), so ResNet20 has 269,722 parameters for 10
classes, the count of the common PyTorch CIFAR ResNet20 with option-A shortcuts.

Why Linen and not NNX: fmjax is a library of pure functions over parameter
pytrees (``fisher_diag(params, batch)``, boolean masks shaped like params, optax
updates). A Linen model IS such a function: ``model.apply({'params': p,
'batch_stats': s}, x, train=False)`` with plain nested dicts in and out, no
split/merge on every call. Linen's method interception also lets the per-layer
Fisher path read every Conv/Dense/BatchNorm input and output gradient of ANY
Linen model (user models too) without editing it. NNX would need a
``nnx.split``/``nnx.merge`` round trip per call and object state in the graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fmjax.models._layers import batch_norm, conv_init


class BasicBlock(nn.Module):
  """Two 3x3 conv-BN layers with an identity shortcut, or where the shape changes
  an option-A (parameter-free) or option-B (1x1 conv + BN) shortcut."""
  features: int
  stride: int = 1
  shortcut: str = "A"

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = nn.Conv(self.features, (3, 3), self.stride, padding=1, use_bias=False,
                kernel_init=conv_init, name="conv1")(x)
    y = nn.relu(batch_norm(train, "bn1")(y))
    y = nn.Conv(self.features, (3, 3), 1, padding=1, use_bias=False,
                kernel_init=conv_init, name="conv2")(y)
    y = batch_norm(train, "bn2")(y)
    if (self.stride != 1 or x.shape[-1] != self.features) and self.shortcut == "B":
      x = nn.Conv(self.features, (1, 1), self.stride, use_bias=False, kernel_init=conv_init,
                  name="shortcut_conv")(x)
      x = batch_norm(train, "shortcut_bn")(x)
    elif self.stride != 1 or x.shape[-1] != self.features:
      # Option A: subsample spatially, zero-pad the new channels on both sides.
      x = x[:, ::self.stride, ::self.stride, :]
      extra = self.features - x.shape[-1]
      x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return nn.relu(y + x)


class CifarResNet(nn.Module):
  """ResNet for 32x32-style inputs: conv-BN-ReLU, stages of basic blocks, GAP, Dense.

  Attributes:
    num_classes: output logits.
    blocks_per_stage: n in 6n+2 (3 for ResNet20, 8 for the paper's ResNet50).
    widths: channels of the stages (three for He et al.'s nets, four for ResNet-18).
    shortcut: 'A' (parameter-free, He et al.'s CIFAR nets) or 'B' (1x1 conv + BN,
      ResNet-18) where a block changes shape.

  Input: images [B, H, W, C] float (any H, W, C); output: logits [B, num_classes].
  """
  num_classes: int = 10
  blocks_per_stage: int = 3
  widths: Sequence[int] = (16, 32, 64)
  shortcut: str = "A"

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.widths[0], (3, 3), padding=1, use_bias=False, kernel_init=conv_init,
                name="conv_init")(x)
    x = nn.relu(batch_norm(train, "bn_init")(x))
    for stage, width in enumerate(self.widths):
      for block in range(self.blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(width, stride, shortcut=self.shortcut,
                       name=f"stage{stage + 1}_block{block + 1}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="classifier")(x)


def resnet18(num_classes: int = 10) -> CifarResNet:
  """ResNet-18 in its CIFAR form, the model of the unlearning protocol's tables
  (SalUn, "Model Sparsity Can Simplify Machine Unlearning", SSD, SCRUB): a 3x3
  stem with 64 channels and no max-pool, four stages of two basic blocks with
  64/128/256/512 channels (stride 2 from the second stage on), option-B
  shortcuts (1x1 conv + BN), global average pooling and a Dense layer:
  11,173,962 parameters for 10 classes."""
  return CifarResNet(num_classes=num_classes, blocks_per_stage=2, widths=(64, 128, 256, 512),
                     shortcut="B")


def resnet20(num_classes: int = 10) -> CifarResNet:
  """ResNet20 (6*3+2 layers, 0.27M parameters for 10 classes)."""
  return CifarResNet(num_classes=num_classes, blocks_per_stage=3)


def resnet50(num_classes: int = 10) -> CifarResNet:
  """The paper's "ResNet50": the CIFAR ResNet with n=8 (6*8+2 = 50 layers)."""
  return CifarResNet(num_classes=num_classes, blocks_per_stage=8)
