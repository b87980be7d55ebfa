"""Random labels ("RL"; Golatkar et al. 2020's baseline, as SalUn runs it).

Every epoch first passes over D_f, each forget example carrying a uniformly
random WRONG label (drawn again every epoch), then over D_r with the true
labels; plain cross-entropy, the training's SGD, a constant learning rate.
This is SalUn's public code for CIFAR-10 (one loader after the other; its
CIFAR-100 branch shuffles both sets together). Two departures, both stated:
the code draws labels uniformly from all K classes, so a forget example keeps
its true label with probability 1/K; fmjax draws among the K - 1 wrong
labels (the method's intent: the label is not the true one). And fmjax's
learning rate is constant (SalUn's 10 epochs end before its step decays).

Defaults: 10 epochs at lr 0.1 (SalUn's README for ResNet-18 on CIFAR-10);
``--lr`` sets another constant rate, ``--epochs`` other epochs.
"""

from __future__ import annotations

from fmjax.methods.finetune import no_edit
from fmjax.procedures import Budget, CrossEntropy, Procedure, Stage
from fmjax.task import MethodSettings, UnlearnTask

# No edit: the work is :func:`random_label_procedure`.
random_label = no_edit


def random_label_procedure(task: UnlearnTask, settings: MethodSettings,
                           budget: Budget) -> Procedure:
  """D_f with random wrong labels, then D_r, every epoch."""
  del task, settings
  return budget.procedure(
      (Stage(CrossEntropy(), "forget", budget.batch_size, random_labels=True),
       Stage(CrossEntropy(), "remain", budget.batch_size)),
      info={"lr": budget.lr, "epochs": budget.epochs,
                          "batch_size": budget.batch_size})
