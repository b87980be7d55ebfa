"""Table 2: outlier deletion on CIFAR-10 with ResNet20 at 10, 30 and 50% noise.

Run::

    make outliers
    python -m experiments.run outliers --workdir runs/outliers

For each noise ratio a ResNet20 is trained on CIFAR-10 whose labels are
shuffled within a random group of that size (Section 4); each method then
deletes the group and fine-tunes for T = 30 epochs. The table lists the best
test accuracy and the best accuracy on the removed points with their true
labels ("noise accuracy") within T epochs, mean +- std over seeds. Retrain
(from scratch without the group) is the reference row. FisherNoise and TF-IDF
remove classes only and are not run, as in the paper.
"""

from __future__ import annotations

from experiments._spec import Experiment, Original, Unit, shrink
from fmjax.methods import defaults, get_method, tagged

NOISE = (0.1, 0.3, 0.5)
# The paper's methods that can forget outliers (not TF-IDF: classes only) and train (the
# figure's curves; Influence and FisherNoise do not).
METHOD_NAMES = tuple(m for m in tagged("paper")
                     if not get_method(m).classes_only and defaults(m).trains)


def get_config(*, small: bool = False, noise=NOISE, seeds=(0, 1, 2)) -> Experiment:
  """``small``: the first noise ratio only, digits with the small CNN."""
  if small:
    noise = noise[:1]
  dataset, model = ("digits", "small_cnn") if small else ("cifar10", "resnet20")
  originals = {f"noise={round(f * 100)}%": Original(dataset, model, {"noise_fraction": f})
               for f in noise}
  units = tuple(Unit(key, m, m, key, {"forget_classes": None})
                for key in originals for m in METHOD_NAMES)
  exp = Experiment(name="outliers", title=f"Outlier deletion (Table 2): {dataset}, {model}",
                   originals=originals, units=units, seeds=tuple(seeds),
                   tables=("outliers", "volatility", "seconds"), figure="curves",
                   rows=("test_accuracy", "noise_accuracy"))
  return shrink(exp) if small else exp
