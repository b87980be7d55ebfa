"""The offline default: class removal on real Fashion-MNIST, sized for a 2-core CPU.

Run (the README's first command; under 20 minutes on the project's CPU)::

    make offline

Same code path as :mod:`experiments.class_removal`: the small CNN is trained
on the first 10,000 Fashion-MNIST training images for 5 epochs at the paper's
MNIST rate (constant 0.01), then all nine methods remove class 0 (T-shirt/top)
and fine-tune for S = 5 epochs with that schedule replayed, over two seeds,
with the paper's MNIST mask ratio R = 0.04. Readouts use at most 3,000
training examples per set. Data: ``apt-get install dataset-fashion-mnist``.
"""

from __future__ import annotations

import dataclasses

from experiments import class_removal

TRAIN = {"epochs": 5, "train_limit": 10_000}
UNLEARN = {"epochs": 5, "eval_limit": 3_000, "relearn_epochs": 5, "score_limit": 5_000,
           "hessian_examples": 1_024}


def get_config(*, small: bool = False, seeds: tuple[int, ...] = (0, 1)):
  """The offline default (``small``: its smoke form on digits, two methods: the
  pipeline is class_removal's, whose smoke form runs all of them)."""
  methods = ("finetune", "fisher_mask") if small else class_removal.METHOD_NAMES
  exp = class_removal.get_config("fashion_mnist", "small_cnn", small=small, train=TRAIN,
                                 unlearn=UNLEARN, seeds=seeds, methods=methods)
  return dataclasses.replace(exp, name="fashion_offline", title=(
      "Class removal on Fashion-MNIST (offline default): class 0, small CNN, 10k training "
      "images"))
