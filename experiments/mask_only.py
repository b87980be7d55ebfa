"""Table 1: forget and remain test accuracy right after the edit, with no fine-tuning.

Run::

    make mask-only                          # the four settings of Figure 2
    python -m experiments.run mask_only --workdir runs/mask_only

Every masking method (and FisherNoise and Influence, whose edits need no
fine-tuning either) removes class 0 with T = 0 on each setting; the table
averages the settings that were run, with the original model's row
(Finetune's edit is the identity, so its row IS the original model).
"""

from __future__ import annotations

from experiments._spec import Experiment, Original, Unit, shrink
from fmjax.methods import get_method, tagged

SETTINGS = (("cifar10", "resnet20"), ("cifar100", "googlenet"), ("mnist", "vgg16"),
            ("tiny_imagenet", "densenet"))   # Figure 2's four
# The paper's methods but the Retrain reference (its edit is a fresh model).
METHOD_NAMES = tuple(m for m in tagged("paper") if "reference" not in get_method(m).tags)


def get_config(*, small: bool = False, settings=SETTINGS, seeds=(0, 1, 2)) -> Experiment:
  """``small``: one setting, digits with the small CNN."""
  if small:
    settings = (("digits", "small_cnn"),)
  originals = {f"{d}-{m}": Original(d, m) for d, m in settings}
  units = tuple(Unit(key, method, method, key, {"epochs": 0, "relearn_epochs": 0})
                for key in originals for method in METHOD_NAMES)
  exp = Experiment(name="mask_only", title="Mask only (Table 1): accuracy right after the edit",
                   originals=originals, units=units, seeds=tuple(seeds),
                   tables=("mask_only", "seconds"), figure=None)
  return shrink(exp) if small else exp
