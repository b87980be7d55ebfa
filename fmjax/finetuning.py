"""The one fine-tuning routine every method shares (and Retrain's training loop).

After a method edits the model, fine-tuning runs SGD on the remain data with
the original optimiser (momentum, weight decay) and a fresh optimiser state.
The learning rate is, by default, the original schedule compressed into
S = 5 epochs and held at its last rate afterwards (Section 3.4,
:func:`fmjax.schedules.compressed_schedule`); a constant rate serves the
learning-rate ablation (Section 4.5), and the uncompressed schedule serves
Retrain.

Masked weights start at zero; by default fine-tuning may move them again (the
paper's procedure). With ``freeze=mask`` they stay exactly zero: the
gradient is zeroed before weight decay and momentum see it, and the final
update is zeroed too, so neither momentum nor weight decay can move them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmjax import schedules, training


class ZeroMaskedState(NamedTuple):
  """Stateless."""


def zero_masked(mask: Any) -> optax.GradientTransformation:
  """Sets the updates of masked entries (mask True) to exactly zero."""

  def init(params):
    del params
    return ZeroMaskedState()

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, m: jnp.where(m, jnp.zeros_like(u), u), updates, mask), state

  return optax.GradientTransformation(init, update)


def finetune_optimizer(lr: float | optax.Schedule, *, momentum: float, weight_decay: float,
                       freeze: Any = None) -> optax.GradientTransformation:
  """The training optimiser, optionally keeping the ``freeze`` mask's entries at zero."""
  opt = training.sgd(lr, momentum=momentum, weight_decay=weight_decay)
  if freeze is None:
    return opt
  return optax.chain(zero_masked(freeze), opt, zero_masked(freeze))


def finetune_schedule(original: schedules.StepSchedule, mode: str | float, *,
                      steps_per_epoch: int, compress_epochs: float) -> optax.Schedule:
  """The learning rate of fine-tuning.

  Args:
    original: the schedule the model was trained with.
    mode: ``'compressed'`` (the paper): the original schedule replayed in
      ``compress_epochs`` epochs, then its last rate; ``'original'``: the
      original schedule itself (Retrain); a number: that constant rate.
    steps_per_epoch: optimiser steps per fine-tuning epoch.
    compress_epochs: S.
  """
  if isinstance(mode, int | float) and not isinstance(mode, bool):
    if not mode > 0:
      raise ValueError(f"a constant fine-tuning learning rate must be positive, got {mode}.")
    return optax.constant_schedule(float(mode))
  if mode == "compressed":
    return schedules.compressed_schedule(original, compress_epochs, steps_per_epoch)
  if mode == "original":
    return schedules.step_schedule(original, steps_per_epoch)
  raise ValueError(f"fine-tuning lr must be 'compressed', 'original' or a positive number, "
                   f"got {mode!r}.")


class Finetuner:
  """Runs fine-tuning epochs on a set of training indices (one compiled step).

  Args:
    model: the classifier.
    images, labels: the training set (uint8 images [N, ...], labels [N]),
      moved to the device once.
    indices: the examples to fine-tune on.
    mean, std: normalisation statistics.
    optimizer: from :func:`finetune_optimizer`.
    batch_size: examples per step.
    augment: random crop and flip.
    seed: epoch orders and augmentation keys derive from (seed, epoch), so a
      resumed run repeats exactly the epochs an uninterrupted run would.
  """

  def __init__(self, model: nn.Module, images: Any, labels: Any, indices: np.ndarray, *,
               mean: Any, std: Any, optimizer: optax.GradientTransformation, batch_size: int,
               augment: bool, seed: int):
    if len(indices) == 0:
      raise ValueError("fine-tuning needs at least one training example.")
    self.indices = np.asarray(indices)
    self.batch_size = int(min(batch_size, len(self.indices)))
    self.steps_per_epoch = math.ceil(len(self.indices) / self.batch_size)
    self.optimizer = optimizer
    self.seed = seed
    self.images, self.labels = images, labels
    self.step = training.make_epoch_step(model, optimizer, mean, std, augment)
    self.key = jax.random.key(seed)

  def init(self, params: Any, model_state: Any) -> training.TrainState:
    """A fresh optimiser state for ``params``."""
    return training.TrainState(params, model_state, self.optimizer.init(params))

  def epoch(self, state: training.TrainState, epoch: int,
            on_step: Callable[[], None] | None = None) -> tuple[training.TrainState, dict]:
    """One pass over the indices in a (seed, epoch)-determined order."""
    order = self.indices[np.random.default_rng([self.seed, epoch]).permutation(
        len(self.indices))]
    sums = {"loss": 0.0, "accuracy": 0.0}
    for i in range(self.steps_per_epoch):
      idx = order[i * self.batch_size:(i + 1) * self.batch_size]
      if len(idx) < self.batch_size:   # keep one compiled shape: wrap around
        idx = np.concatenate([idx, order[:self.batch_size - len(idx)]])
      key = jax.random.fold_in(self.key, (epoch - 1) * self.steps_per_epoch + i)
      state, m = self.step(state, self.images, self.labels, idx, key)
      sums = {k: sums[k] + m[k] for k in sums}
      if on_step is not None:
        on_step()
    return state, {k: float(v) / self.steps_per_epoch for k, v in sums.items()}
