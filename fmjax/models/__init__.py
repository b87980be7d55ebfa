"""Image classifiers as flax.linen Modules: ``model.apply(variables, x, train)``."""

from fmjax.models.resnet import BasicBlock, CifarResNet, resnet20

__all__ = ["BasicBlock", "CifarResNet", "resnet20"]
