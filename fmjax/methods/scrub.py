"""SCRUB (Kurmanji, Triantafillou, Hayes and Triantafillou, NeurIPS 2023).

A student, initialised from the original model (the teacher, fixed),
alternates in each epoch

* a max-step pass over D_f (only in the first ``scrub_max_epochs`` epochs):
  maximise ``d(x; w_s) = KL(p_teacher(x) || p_student(x))`` (the paper's
  Eq. 2, descent on ``-d``);
* a min-step pass over D_r: minimise
  ``alpha * d(x; w_s) + gamma * CE(student(x), y)`` (Eq. 3).

``d`` is the distillation KL at temperature T, multiplied by T^2 (Hinton et
al.), teacher in inference mode, student in training mode. Defaults are the
public code's for CIFAR-10 class forgetting with ResNet-18: T = 4,
alpha = 0.001, gamma = 0.99, 3 epochs with max-steps in the first 2, SGD
with lr 5e-4 (momentum and weight decay: the original training's), forget
batch 512; the remain batch is the run's batch (the code's 128). The code's
learning-rate decay milestones (epochs 3, 5, 9, applied after them) never
act within 3 epochs, so the rate is constant here.
"""

from __future__ import annotations

from fmjax.methods.finetune import no_edit
from fmjax.procedures import Budget, Procedure, ScrubMax, ScrubMin, Stage
from fmjax.task import MethodSettings, UnlearnTask

# No edit: the student starts as the original model; the work is :func:`scrub_procedure`.
scrub = no_edit


def scrub_procedure(task: UnlearnTask, settings: MethodSettings, budget: Budget) -> Procedure:
  """Max-steps on D_f in the first epochs, min-steps on D_r in every epoch."""
  del task
  t = settings.scrub_temperature
  max_epochs = tuple(range(1, min(settings.scrub_max_epochs, budget.epochs) + 1))
  return budget.procedure(
      (Stage(ScrubMax(t), "forget", settings.scrub_forget_batch_size, epochs=max_epochs),
       Stage(ScrubMin(t, settings.scrub_ce_weight, settings.scrub_kl_weight), "remain",
             budget.batch_size)),
      teacher=True,
      info={"lr": budget.lr, "epochs": budget.epochs, "max_epochs": list(max_epochs),
            "temperature": t, "kl_weight": settings.scrub_kl_weight,
            "ce_weight": settings.scrub_ce_weight, "batch_size": budget.batch_size,
            "forget_batch_size": settings.scrub_forget_batch_size})
