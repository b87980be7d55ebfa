"""Figure 4: FisherMask at mask ratios 0 to 0.12.

Run::

    make ratio-sweep
    python -m experiments.run ratio_sweep --workdir runs/ratio_sweep

CIFAR-10, ResNet20, class 0, T = 30 epochs. Ratio 0 masks nothing: it is
Finetune.
"""

from __future__ import annotations

from experiments._spec import Experiment, Original, Unit, shrink

RATIOS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10, 0.12)


def get_config(*, small: bool = False, dataset: str = "cifar10", model: str = "resnet20",
               ratios=RATIOS, seeds=(0, 1, 2)) -> Experiment:
  """``small``: ratios 0, 0.04 and 0.12 on digits."""
  if small:
    dataset, model = "digits", "small_cnn"
    ratios = (0.0, 0.04, 0.12)
  units = tuple(Unit("fisher_mask", f"R={r:.2f}", "finetune" if r == 0 else "fisher_mask",
                     "main", {} if r == 0 else {"ratio": r}) for r in ratios)
  exp = Experiment(name="ratio_sweep", title=f"Mask ratio sweep (Figure 4): {dataset}, {model}",
                   originals={"main": Original(dataset, model)}, units=units,
                   seeds=tuple(seeds), tables=("final", "mask_only", "volatility"))
  return shrink(exp) if small else exp
