"""Figure 5: fine-tuning learning rate, constant 0.1 / 0.01 / 0.001 vs compressed.

Run::

    make lr-ablation
    python -m experiments.run lr_ablation --workdir runs/lr_ablation

CIFAR-10, ResNet20, class 0, T = 30 epochs, for Finetune, ActivationMask and
FisherMask; one panel per learning-rate setting.
"""

from __future__ import annotations

from experiments._spec import Experiment, Original, Unit, shrink

RATES = ("compressed", 0.1, 0.01, 0.001)
METHOD_NAMES = ("finetune", "activation_mask", "fisher_mask")


def get_config(*, small: bool = False, dataset: str = "cifar10", model: str = "resnet20",
               rates=RATES, seeds=(0, 1, 2)) -> Experiment:
  """``small``: the compressed schedule and a constant 0.01, on digits."""
  if small:
    dataset, model = "digits", "small_cnn"
    rates = ("compressed", 0.01)
  units = tuple(Unit(f"lr={r}", m, m, "main", {"lr": r}) for r in rates for m in METHOD_NAMES)
  exp = Experiment(name="lr_ablation", title=f"Learning-rate ablation (Figure 5): {dataset}, "
                   f"{model}", originals={"main": Original(dataset, model)}, units=units,
                   seeds=tuple(seeds))
  return shrink(exp) if small else exp
