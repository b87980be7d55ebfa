"""Figure 3: unlearning with forget data only, and with 50 remain examples.

Run::

    make limited-remain
    python -m experiments.run limited_remain --workdir runs/limited_remain

CIFAR-10, ResNet20, class 0. "forget only": ActivationMask and FisherMask
score from the forget set alone and are not fine-tuned (points at epoch 0).
"50 remain": Finetune, ActivationMask and FisherMask get 50 random remain
examples (0.1% of D_r) for scoring and fine-tuning; curves over T = 30 epochs.
Readouts always use the full test set and remain set.
"""

from __future__ import annotations

from experiments._spec import Experiment, Original, Unit, shrink


def get_config(*, small: bool = False, dataset: str = "cifar10", model: str = "resnet20",
               remain: int = 50, seeds=(0, 1, 2)) -> Experiment:
  """``small``: digits with the small CNN."""
  if small:
    dataset, model = "digits", "small_cnn"
  units = [Unit("forget only", m, m, "main", {"no_remain": True, "epochs": 0,
                                              "relearn_epochs": 0})
           for m in ("activation_mask", "fisher_mask")]
  units += [Unit(f"{remain} remain", m, m, "main", {"remain_limit": remain})
            for m in ("finetune", "activation_mask", "fisher_mask")]
  exp = Experiment(name="limited_remain",
                   title=f"Limited remain data (Figure 3): {dataset}, {model}",
                   originals={"main": Original(dataset, model)}, units=tuple(units),
                   seeds=tuple(seeds))
  return shrink(exp) if small else exp
