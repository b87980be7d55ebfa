"""SalUn's CIFAR-10 protocol, as its released code runs it: for a GPU machine and a network.

Run (prepares CIFAR-10 through tensorflow-datasets first; not run on this project's CPU)::

    make salun-cifar10                          # seeds 2, 3, 4
    make salun-cifar10 SET="seeds=2,3,4,5,6,7,8,9,10,11"

The recipe of OPTML-Group/Unlearn-Saliency (``Classification/``: ``arg_parser.py``,
``dataset.py``, ``main_train.py``, ``main_random.py``, its README), reproduced index
for index:

* **Split.** SalUn holds out a tenth of each class of the 50,000 training images as a
  validation set (:func:`fmjax.data.salun_holdout`). Its ``main_train.py`` trains the
  original on the loader built with the function's default seed, 1; its unlearning
  scripts build theirs with the run's ``--seed`` (default 2). So the unlearning's 45,000
  (D_f and D_r) is the hold-out split of the run's seed, not quite the original's
  training set: 4,500 of its images were held out from the original (they enter D_r or
  D_f as unseen images), and as many of the original's training images are in neither.
  ``split='salun'`` (:class:`fmjax.run.config.UnlearnConfig`) reproduces exactly that.
* **Forget sets.** ``RandomState(seed - 1).choice`` over the 45,000 positions: 4,500
  (random 10%) or 22,500 (random 50%); class-wise, the 4,500 images of the class (class
  0 here: the choice of class is fmjax's). Class-wise TA is on the test images of the
  other classes (fmjax's ``remain_test_accuracy``).
* **Original.** ResNet-18 (CIFAR form), 182 epochs, batch 256, SGD lr 0.1, momentum
  0.9, weight decay 5e-4, x0.1 after epochs 91 and 136, random crop 32 (padding 4) and
  horizontal flips.
* **Methods** at their own recipes (:mod:`fmjax.methods`; SalUn and random labels: 10
  epochs at lr 0.013, its README's random-forgetting example) and published epochs.

The report gives the protocol table (UA, RA, TA, MIA-efficacy, average gap to Retrain,
RTE) with mean and spread over seeds. It does not yet set SalUn's published Table 1
beside it: no copy of the paper this project could read held the table, and numbers
typed from memory would be worse than none.
"""

from __future__ import annotations

from experiments._spec import Experiment, Original, Unit, shrink
from fmjax.methods import get_method, tagged
from fmjax.unlearning import for_method

TRAIN = {"epochs": 182, "batch_size": 256, "lr": 0.1, "decay_epochs": (91, 136),
         "momentum": 0.9, "weight_decay": 5e-4, "augment": True, "holdout_seed": 1}
SETTINGS = (("random 10%", {"forget_random": 0.1, "forget_classes": None}),
            ("random 50%", {"forget_random": 0.5, "forget_classes": None}),
            ("class 0", {"forget_classes": (0,)}))
# Every readout on the whole sets (a GPU's budget); SalUn's split for every unit.
UNLEARN = {"eval_limit": None, "relearn_epochs": 0, "split": "salun"}
METHODS = ("retrain", "finetune", "fisher_mask", "influence") + tagged("successor")


def get_config(*, small: bool = False, seeds: tuple[int, ...] = (2, 3, 4)) -> Experiment:
  """SalUn's CIFAR-10 recipe (``small``: the digits smoke form, SalUn's split kept)."""
  units = []
  for setting, forget in SETTINGS:
    for name in METHODS:
      if get_method(name).classes_only and forget.get("forget_classes") is None:
        continue
      units.append(Unit(setting, name, name, "main", for_method(name, {**UNLEARN, **forget})))
  exp = Experiment(
      name="salun_recipe",
      title="SalUn's CIFAR-10 protocol (its released code's split, forget sets and recipe): "
            "ResNet-18",
      originals={"main": Original("cifar10", "resnet18", TRAIN)}, units=tuple(units),
      seeds=tuple(seeds), tables=("protocol", "recipes", "seconds"), figure="protocol")
  return shrink(exp) if small else exp
