"""Per-example forgetting quality from ensembles on CIFAR-10: 128 models per method (a GPU).

Run (a GPU machine, CIFAR-10 prepared or a network)::

    make privacy-cifar10                      # ResNet-18, 128 seeds, K = 32 a program
    make privacy-cifar10 MODEL=resnet20 K=64  # the paper's ResNet20
    make privacy-cifar10 SET="seeds=0,1,2,3,4,5,6,7"

:mod:`experiments.privacy`'s design on the field's benchmark: random 10% forgetting of
all 50,000 CIFAR-10 training images (one forget set, ``forget_seed=0``), the original
trained with SalUn's released recipe (182 epochs, batch 256, lr 0.1 with x0.1 at epochs
91 and 136, momentum 0.9, weight decay 5e-4, random crop and flip; no hold-out), every
method at its authors' own recipe (no epoch cap, their default rates), 128 seeds of each
and 128 more of Retrain as the reference. Each model keeps its final per-example
confidences on all of D_f, 5,000 remain examples and the 10,000 test images.

Cost: Retrain is 256 trainings of 182 epochs. ``--units-per-program K`` (make's ``K``)
stacks K seeds into one program; their activations scale with K (ResNet-18 at batch 256
holds about 3 GB of activations per model in float32), so K = 32 suits an 80-140 GB GPU.
Not run on this project's CPU.
"""

from __future__ import annotations

from experiments._spec import Experiment, Original
from experiments.privacy import ensemble_units
from experiments.privacy import get_config as offline
from experiments.salun_recipe import TRAIN as SALUN_TRAIN

TRAIN = {k: v for k, v in SALUN_TRAIN.items() if k != "holdout_seed"}
# No checkpoint once a unit has finished: its 1,408 ResNet-18 units would otherwise keep
# about 250 GB of them (two steps of 11.2M weights and their momentum, float32, each).
UNLEARN = {"forget_seed": 0, "confidences": True, "eval_epochs": "last", "eval_limit": 5_000,
           "test_limit": None, "relearn_epochs": 0, "keep_checkpoints": False}


def get_config(model: str = "resnet18", *, small: bool = False,
               seeds: tuple[int, ...] = tuple(range(128))) -> Experiment:
  """The CIFAR-10 ensembles (``small``: :mod:`experiments.privacy`'s digits form)."""
  if small:
    return offline(small=True, seeds=seeds)
  return Experiment(
      name="privacy_cifar10",
      title=f"Per-example forgetting quality from ensembles: random 10% of CIFAR-10, {model}",
      originals={"main": Original("cifar10", model, TRAIN)},
      units=ensemble_units({"forget_classes": None, "forget_random": 0.1}, unlearn=UNLEARN,
                           lr={}, max_epochs=None),
      seeds=tuple(seeds), tables=("privacy", "protocol", "seconds"), figure="privacy")
