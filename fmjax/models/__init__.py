"""Image classifiers as flax.linen Modules: ``model.apply(variables, x, train=...)``.

``get_model(name, num_classes)`` builds one by name; input channels and image
size come from the data at ``model.init``. ``train`` is False (inference: BatchNorm
uses its running statistics), True (training: batch statistics, running
statistics updated) or a boolean [B] mask of the examples BatchNorm's batch
statistics count (a batch padded for several devices, :mod:`fmjax.sharding`).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from fmjax.models.densenet import DenseNet, densenet
from fmjax.models.googlenet import GoogLeNet, googlenet
from fmjax.models.resnet import BasicBlock, CifarResNet, resnet18, resnet20, resnet50
from fmjax.models.small_cnn import SmallCNN, small_cnn, tiny_cnn
from fmjax.models.vgg import VGG, vgg16

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": resnet18, "resnet20": resnet20, "resnet50": resnet50, "vgg16": vgg16,
    "googlenet": googlenet, "densenet": densenet, "small_cnn": small_cnn,
    "tiny_cnn": tiny_cnn,
}


def get_model(name: str, num_classes: int) -> nn.Module:
  """The model called ``name`` with ``num_classes`` outputs."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; valid names: {sorted(MODELS)}.")
  if not (isinstance(num_classes, int) and num_classes >= 2):
    raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
  return MODELS[name](num_classes)


__all__ = ["MODELS", "VGG", "BasicBlock", "CifarResNet", "DenseNet", "GoogLeNet", "SmallCNN",
           "densenet", "get_model", "googlenet", "resnet18", "resnet20", "resnet50",
           "small_cnn", "tiny_cnn", "vgg16"]
