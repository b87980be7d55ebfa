"""Figure 2: remove class 0 with every method; forget/remain test accuracy per epoch.

Run (a GPU and a network for CIFAR; the data is prepared first)::

    make cifar10-resnet20                                  # this config, CIFAR-10 / ResNet20
    make class-removal DATASET=cifar100 MODEL=googlenet    # any of the paper's 16 pairs
    python -m experiments.run class_removal --dataset mnist --model vgg16 --workdir runs/x

The original model is trained with the paper's settings (160 epochs at lr 0.1
with decays at 80 and 120 on CIFAR and Tiny-ImageNet; 30 epochs at 0.01 on
MNIST), then every method removes class 0 and fine-tunes for T = 30 epochs
with the schedule compressed into S = 5 (FisherNoise and Influence: no
fine-tuning, as in the paper's figures), over seeds 0, 1, 2. The figure draws
Retrain's curve and final level (red, dashed) and FisherNoise's level (black,
dashed) as references.
"""

from __future__ import annotations

from experiments._spec import Experiment, Original, Unit, shrink
from fmjax.methods import defaults, tagged
from fmjax.unlearning import for_method

DATASETS = ("cifar10", "cifar100", "mnist", "tiny_imagenet")
MODELS = ("resnet20", "vgg16", "googlenet", "densenet")
PAIRS = tuple((d, m) for d in DATASETS for m in MODELS)   # the paper's 16 settings
METHOD_NAMES = tagged("paper")   # the paper's method and its baselines, in the registry's order


def _overrides(method: str, unlearn: dict | None) -> dict:
  over = for_method(method, dict(unlearn or {}))
  if not defaults(method).trains:
    over.pop("epochs", None)
  return over


def get_config(dataset: str = "cifar10", model: str = "resnet20", *, small: bool = False,
               train: dict | None = None, unlearn: dict | None = None,
               seeds: tuple[int, ...] = (0, 1, 2), methods: tuple[str, ...] = METHOD_NAMES
               ) -> Experiment:
  """Class removal on ``dataset`` with ``model`` (one of :data:`PAIRS`, or any
  dataset/model fmjax knows, e.g. ``fashion_mnist``/``small_cnn``).

  Args:
    small: the smoke form (digits, small CNN, 2 + 1 epochs, one seed).
    train: overrides of the original model's training config.
    unlearn: overrides applied to every unit (e.g. ``{'epochs': 10}``); an
      ``epochs`` override skips the methods that do not fine-tune by default
      (FisherNoise, Influence: the paper draws them as levels).
    seeds: unlearning seeds.
    methods: the methods to run.
  """
  if small:
    dataset, model = "digits", "small_cnn"
  setting = f"{dataset}-{model}"
  exp = Experiment(
      name="class_removal", title=f"Class removal (Figure 2): class 0 of {dataset}, {model}",
      originals={"main": Original(dataset, model, dict(train or {}))},
      units=tuple(Unit(setting, m, m, "main", _overrides(m, unlearn)) for m in methods),
      seeds=tuple(seeds))
  return shrink(exp) if small else exp
