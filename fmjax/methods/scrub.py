"""SCRUB (Kurmanji, Triantafillou, Hayes and Triantafillou, NeurIPS 2023).

A student, initialised from the original model (the teacher, fixed),
alternates in each epoch

* a max-step pass over D_f (only in the first ``max_epochs`` epochs):
  maximise ``d(x; w_s) = KL(p_teacher(x) || p_student(x))`` (the paper's
  Eq. 2, descent on ``-d``);
* a min-step pass over D_r: minimise
  ``alpha * d(x; w_s) + gamma * CE(student(x), y)`` (Eq. 3).

``d`` is the distillation KL at temperature T, multiplied by T^2 (Hinton et
al.), teacher in inference mode, student in training mode. Recipe: the public code's
(``large_scale_unlearning.ipynb``, CIFAR-10 with ResNet-18): T = 4,
alpha = 0.001, gamma = 0.99, 3 epochs with max-steps in the first 2, SGD
with lr 5e-4, momentum 0.9 and weight decay 5e-4, forget batch 512, remain
batch 256. The code's learning-rate decay milestones (epochs 3, 5, 9,
applied after them) never act within 3 epochs, so the rate is constant here.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from fmjax.methods.base import Method, register
from fmjax.procedures import Budget, Procedure, ScrubMax, ScrubMin, Stage
from fmjax.task import UnlearnTask


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SCRUB(Method):
  """SCRUB's max/min teacher-student steps (no edit: the student starts as the original).

  Attributes:
    temperature: the distillation temperature T.
    kl_weight: alpha, the weight of the KL in the min-step.
    ce_weight: gamma, the weight of the cross-entropy in the min-step.
    max_epochs: the max-steps run in the first this many epochs.
    forget_batch_size: the forget-set batch of the max-steps.
  """
  name: ClassVar[str] = "scrub"
  tags: ClassVar[tuple[str, ...]] = ("successor",)
  limits: ClassVar[dict[str, str]] = {"temperature": ">0", "kl_weight": ">=0",
                                      "ce_weight": ">=0", "max_epochs": ">=0",
                                      "forget_batch_size": ">=1"}
  epochs: int | None = 3
  lr: float = 5e-4
  batch_size: int | None = 256
  momentum: float | None = 0.9
  weight_decay: float | None = 5e-4
  temperature: float = 4.0
  kl_weight: float = 0.001
  ce_weight: float = 0.99
  max_epochs: int = 2
  forget_batch_size: int = 512

  def procedure(self, task: UnlearnTask, budget: Budget) -> Procedure:
    """Max-steps on D_f in the first epochs, min-steps on D_r in every epoch."""
    del task
    t = self.temperature
    max_epochs = tuple(range(1, min(self.max_epochs, budget.epochs) + 1))
    return budget.procedure(
        (Stage(ScrubMax(t), "forget", self.forget_batch_size, epochs=max_epochs),
         Stage(ScrubMin(t, self.ce_weight, self.kl_weight), "remain", budget.batch_size)),
        teacher=True,
        info={"lr": budget.lr, "epochs": budget.epochs, "max_epochs": list(max_epochs),
              "temperature": t, "kl_weight": self.kl_weight, "ce_weight": self.ce_weight,
              "batch_size": budget.batch_size, "forget_batch_size": self.forget_batch_size})
