"""Per-example forgetting quality from ensembles: N models of every method, one forget set.

Run (offline, this CPU)::

    make privacy                 # 16 models per method, 32 of Retrain
    make privacy SET="seeds=0,1,2,3,4,5,6,7"

Random 10% forgetting of a memorising original (``tiny_cnn``, the small CNN at half its
channels, on the first 2,000 real Fashion-MNIST images, 25 epochs at lr 0.01, x0.1 after
epoch 20: the last epoch's running train accuracy is above 99%, as the protocol's
ResNet-18 on CIFAR-10). On this CPU one unit already keeps both cores busy and a stacked
program is slower than separate ones (``make bench-scale``), so ``make privacy`` runs
``K=1``; on an accelerator ``K=16`` trains each line's 16 models as one program.

Every unit runs over the experiment's seeds with ONE forget set and one evaluated
sample (``forget_seed=0``), so the seeds make an ensemble: N fresh Retrain models
(initialisation and data order) and, for each method, N runs from the same original.
Each unit keeps only its records and its final model's per-example confidences, its
checkpoints deleted once it has finished (``keep_checkpoints=False``; ``confidences=True``;
:mod:`fmjax.privacy`; ``SET="unlearn.confidence_epochs=all"`` adds every epoch's, and
the report a table of F by epoch), no per-epoch readouts. Retrain runs twice as many
seeds: its second half (``retrain (reference)``, seeds + 1000) is the distribution every
ensemble, Retrain's first half included, is scored against, so the Retrain row shows
what an exact unlearning scores (the scores' noise floor).

The report adds :func:`experiments.report.privacy.privacy_table` (the challenge's
forgetting quality F and final score, U-LiRA AUC and TPR at 1% FPR, KLoM, each with a
bootstrap interval over forget examples; population MIA-efficacy beside them, labelled
so) and a figure of the per-example ε per method and of F against RTE.
``--units-per-program K`` stacks K seeds of one method into one program.
"""

from __future__ import annotations

import dataclasses

from experiments._spec import Experiment, Original, Unit, shrink
from experiments.successors import units as protocol_units
from fmjax.unlearning import for_method

TRAIN = {"epochs": 25, "decay_epochs": (20,), "train_limit": 2_000}
METHODS = ("retrain", "finetune", "fisher_mask", "ssd", "salun", "scrub", "l1_sparse",
           "neggrad_plus", "random_label")
# Shared by every unit (each takes the settings its method has): one forget set for all
# seeds, the final model's confidences, readouts of the original, the edit and the end, and
# no checkpoint once a unit has finished (its records and confidences are what the scores
# read).
UNLEARN = {"forget_seed": 0, "confidences": True, "eval_epochs": "last", "eval_limit": 1_000,
           "test_limit": 2_000, "relearn_epochs": 0, "score_limit": 2_000,
           "hessian_examples": 512, "keep_checkpoints": False}
# The rates make successors picked for these methods on the memorising original.
LR = {"salun": 0.013, "random_label": 0.013, "scrub": 0.01}
REFERENCE = "retrain (reference)"
REFERENCE_OFFSET = 1000


def ensemble_units(forget: dict, *, unlearn: dict, lr: dict, max_epochs: int | None
                   ) -> tuple[Unit, ...]:
  """Every method of :data:`METHODS` on one ``forget`` set with the ``unlearn`` settings
  (``lr``: rates per method), plus Retrain's reference ensemble (seeds + 1000)."""
  out = []
  for u in protocol_units("random 10%", forget, max_epochs=max_epochs, methods=METHODS):
    over = {**for_method(u.method, unlearn), **u.unlearn}
    if u.method in lr:
      over["lr"] = lr[u.method]
    out.append(dataclasses.replace(u, unlearn=over))
    if u.method == "retrain":
      out.append(Unit(u.setting, REFERENCE, "retrain", u.original, over,
                      seed_offset=REFERENCE_OFFSET))
  return tuple(out)


def get_config(*, small: bool = False, seeds: tuple[int, ...] = tuple(range(16)),
               max_epochs: int | None = 5) -> Experiment:
  """The ensemble experiment (``small``: digits, 4 models per method, for tests)."""
  exp = Experiment(
      name="privacy",
      title="Per-example forgetting quality from ensembles: random 10% of Fashion-MNIST, "
            "tiny CNN, a memorising original",
      originals={"main": Original("fashion_mnist", "tiny_cnn", TRAIN)},
      units=ensemble_units({"forget_classes": None, "forget_random": 0.1}, unlearn=UNLEARN,
                           lr=LR, max_epochs=max_epochs),
      seeds=tuple(seeds), tables=("privacy", "protocol", "seconds"), figure="privacy")
  if not small:
    return exp
  return dataclasses.replace(shrink(exp), seeds=tuple(seeds)[:4])
