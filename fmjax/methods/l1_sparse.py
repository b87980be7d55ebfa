"""l1-sparse unlearning (Jia, Liu, Ram, Yao, Liu, Liu, Sharma and Liu, NeurIPS 2023,
"Model Sparsity Can Simplify Machine Unlearning").

Fine-tune on D_r with an l1 penalty (the paper's Eq. 5):
``min_theta L(theta; D_r) + gamma_t ||theta||_1``, with the penalty weight
decaying linearly over the epochs, ``gamma_t = gamma (1 - (t - 1) / T)`` for
epoch t = 1..T (the public code's schedule, its epochs counted from 0), the
norm over every parameter. Defaults: 10 epochs at lr 0.01 (the README's
command) and gamma = 5e-4 (the README leaves gamma to the user; 5e-4 is the
order of the paper's tuned values for CIFAR-10).
"""

from __future__ import annotations

from fmjax.methods.finetune import no_edit
from fmjax.procedures import Budget, CrossEntropy, Procedure, Stage
from fmjax.task import MethodSettings, UnlearnTask


def l1_gamma(gamma: float, epoch: int, epochs: int) -> float:
  """The penalty weight of ``epoch`` (1-based) of ``epochs``: linear decay from gamma."""
  return gamma * (1.0 - (epoch - 1) / epochs)


# No edit: the work is the penalised fine-tuning, :func:`l1_sparse_procedure`.
l1_sparse = no_edit


def l1_sparse_procedure(task: UnlearnTask, settings: MethodSettings,
                        budget: Budget) -> Procedure:
  """Cross-entropy on D_r plus the decaying l1 penalty."""
  del task
  gamma, epochs = settings.l1_gamma, max(budget.epochs, 1)
  return budget.procedure(
      (Stage(CrossEntropy(l1=True), "remain", budget.batch_size,
             coef=lambda e: l1_gamma(gamma, e, epochs)),),
      info={"lr": budget.lr, "epochs": budget.epochs, "gamma": gamma,
                          "batch_size": budget.batch_size})
