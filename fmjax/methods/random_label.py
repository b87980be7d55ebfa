"""Random labels ("RL"; Golatkar et al. 2020's baseline, as SalUn runs it).

Every epoch first passes over D_f, each forget example carrying a uniformly
random WRONG label (drawn again every epoch), then over D_r with the true
labels; plain cross-entropy, SGD, a constant learning rate. This is SalUn's
public code for CIFAR-10 (one loader after the other; its CIFAR-100 branch
shuffles both sets together). Two departures, both stated: the code draws
labels uniformly from all K classes, so a forget example keeps its true label
with probability 1/K; fmjax draws among the K - 1 wrong labels (the method's
intent: the label is not the true one). And fmjax's learning rate is constant
(SalUn's 10 epochs end before its step decays at epoch 91).

Recipe (SalUn's code, ``Classification/arg_parser.py`` and the README's
random-10% command for ResNet-18 on CIFAR-10, without its saliency mask):
10 epochs at lr 0.013, batch 256, SGD momentum 0.9, weight decay 5e-4.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from fmjax.methods.base import Method, register
from fmjax.procedures import Budget, CrossEntropy, Procedure, Stage
from fmjax.task import UnlearnTask


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomLabel(Method):
  """D_f with random wrong labels, then D_r, every epoch (no edit)."""
  name: ClassVar[str] = "random_label"
  tags: ClassVar[tuple[str, ...]] = ("successor",)
  epochs: int | None = 10
  lr: float = 0.013
  batch_size: int | None = 256
  momentum: float | None = 0.9
  weight_decay: float | None = 5e-4

  def procedure(self, task: UnlearnTask, budget: Budget) -> Procedure:
    del task
    return budget.procedure(
        (Stage(CrossEntropy(), "forget", budget.batch_size, random_labels=True),
         Stage(CrossEntropy(), "remain", budget.batch_size)),
        info={"lr": budget.lr, "epochs": budget.epochs, "batch_size": budget.batch_size})
