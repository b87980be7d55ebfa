"""l1-sparse unlearning (Jia, Liu, Ram, Yao, Liu, Liu, Sharma and Liu, NeurIPS 2023,
"Model Sparsity Can Simplify Machine Unlearning").

Fine-tune on D_r with an l1 penalty (the paper's Eq. 5):
``min_theta L(theta; D_r) + gamma_t ||theta||_1``, with the penalty weight
decaying linearly over the epochs, ``gamma_t = gamma (1 - (t - 1) / T)`` for
epoch t = 1..T (the public code's schedule, its epochs counted from 0), the
norm over every parameter. Recipe: 10 epochs at lr 0.01 (the README's
``FT_prune`` command), batch 256, SGD momentum 0.9, weight decay 5e-4 (its
``arg_parser.py``), and gamma = 5e-4 (the README leaves gamma to the user;
5e-4 is the order of the paper's tuned values for CIFAR-10).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from fmjax.methods.base import Method, register
from fmjax.procedures import Budget, CrossEntropy, Procedure, Stage
from fmjax.task import UnlearnTask


def penalty_weight(gamma: float, epoch: int, epochs: int) -> float:
  """The penalty weight of ``epoch`` (1-based) of ``epochs``: linear decay from gamma."""
  return gamma * (1.0 - (epoch - 1) / epochs)


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class L1Sparse(Method):
  """Fine-tuning on D_r with a linearly decaying l1 penalty (no edit).

  Attributes:
    gamma: the initial penalty weight gamma (decays linearly to 0).
  """
  name: ClassVar[str] = "l1_sparse"
  tags: ClassVar[tuple[str, ...]] = ("successor",)
  limits: ClassVar[dict[str, str]] = {"gamma": ">=0"}
  epochs: int | None = 10
  lr: float = 0.01
  batch_size: int | None = 256
  momentum: float | None = 0.9
  weight_decay: float | None = 5e-4
  gamma: float = 5e-4

  def procedure(self, task: UnlearnTask, budget: Budget) -> Procedure:
    """Cross-entropy on D_r plus the decaying l1 penalty."""
    del task
    gamma, epochs = self.gamma, max(budget.epochs, 1)
    return budget.procedure(
        (Stage(CrossEntropy(l1=True), "remain", budget.batch_size,
               coef=lambda e: penalty_weight(gamma, e, epochs)),),
        info={"lr": budget.lr, "epochs": budget.epochs, "gamma": gamma,
              "batch_size": budget.batch_size})
