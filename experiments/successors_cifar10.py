"""The unlearning protocol on CIFAR-10 with ResNet-18 (CIFAR form): for a GPU and a network.

Run::

    make successors-cifar10          # prepares CIFAR-10 through tensorflow-datasets first

The protocol's own setting: ResNet-18 trained with the paper's CIFAR schedule
(160 epochs at lr 0.1, decays at 80 and 120), then class removal (class 0)
and random 10% forgetting with every method at its published epochs and
rates (:mod:`experiments.successors` lists them), SalUn, random labels and
SCRUB swept over three rates, seeds 0, 1, 2. Not run on the project's CPU.
"""

from __future__ import annotations

import dataclasses

from experiments import successors


def get_config(*, small: bool = False, seeds: tuple[int, ...] = (0, 1, 2)):
  """CIFAR-10 / ResNet-18, published epochs (``small``: the digits smoke form)."""
  exp = successors.get_config("cifar10", "resnet18", small=small, seeds=seeds,
                              max_epochs=None, unlearn={"eval_limit": 10_000})
  return dataclasses.replace(exp, name="successors_cifar10", title=(
      "FisherMask and its successors under the unlearning protocol: CIFAR-10, ResNet-18"))
