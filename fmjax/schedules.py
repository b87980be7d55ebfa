"""Learning-rate schedules as optax schedules, stepping per iteration.

The paper (Section 3.4) fine-tunes with the ORIGINAL training schedule replayed
in S epochs: a decay at fraction f of the original epochs happens after f*S
fine-tuning epochs. For CIFAR (160 epochs, x0.1 at 80 and 120) and S=5 the
rate is 0.1, then 0.01 after 2.5 epochs, then 0.001 after 3.75 epochs, and it
stays at 0.001 for any epochs after S.

Step convention (optax's): update k (k = 0, 1, ...) uses ``schedule(k)``. A
decay at epoch position e takes effect from the first update whose start lies
at or after e epochs, i.e. at step ``ceil(e * steps_per_epoch)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import optax


@dataclass(frozen=True)
class StepSchedule:
  """A piecewise-constant schedule in epochs: the shape of the paper's training.

  Attributes:
    init_lr: the initial learning rate.
    epochs: total training epochs.
    decay_epochs: epochs after which the rate is multiplied by ``decay_factor``
      (empty for a constant rate).
    decay_factor: the multiplier at each decay.
  """
  init_lr: float
  epochs: int
  decay_epochs: Sequence[float] = ()
  decay_factor: float = 0.1

  def __post_init__(self):
    if not self.init_lr > 0:
      raise ValueError(f"init_lr must be positive, got {self.init_lr}.")
    if not (isinstance(self.epochs, int) and self.epochs > 0):
      raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}.")
    bad = [e for e in self.decay_epochs if not 0 < e < self.epochs]
    if bad:
      raise ValueError(f"decay_epochs must lie strictly between 0 and epochs={self.epochs}, "
                       f"got {list(self.decay_epochs)}.")
    if list(self.decay_epochs) != sorted(self.decay_epochs):
      raise ValueError(f"decay_epochs must be increasing, got {list(self.decay_epochs)}.")
    if not 0 < self.decay_factor:
      raise ValueError(f"decay_factor must be positive, got {self.decay_factor}.")

  @classmethod
  def constant(cls, lr: float, epochs: int) -> StepSchedule:
    """A constant rate (the paper's MNIST setting: 0.01 for 30 epochs)."""
    return cls(lr, epochs, ())


# The paper's training schedules (Section 4, "Experimental Setups").
CIFAR_SCHEDULE = StepSchedule(0.1, 160, (80, 120), 0.1)
MNIST_SCHEDULE = StepSchedule.constant(0.01, 30)


def step_schedule(schedule: StepSchedule, steps_per_epoch: int) -> optax.Schedule:
  """The original schedule, per iteration (for training the original model)."""
  return compressed_schedule(schedule, schedule.epochs, steps_per_epoch)


def compressed_schedule(schedule: StepSchedule, compress_epochs: float,
                        steps_per_epoch: int) -> optax.Schedule:
  """The original schedule replayed in ``compress_epochs`` (S) epochs.

  Each decay at epoch d of the original ``schedule.epochs`` happens at epoch
  ``d / schedule.epochs * S`` of fine-tuning, at step
  ``ceil(d / schedule.epochs * S * steps_per_epoch)``. After S epochs the last
  rate holds.

  Args:
    schedule: the original training schedule.
    compress_epochs: S (the paper uses 5).
    steps_per_epoch: optimizer steps per fine-tuning epoch (ceil(N / batch)).

  Returns:
    An optax schedule ``step -> learning rate``.
  """
  if not compress_epochs > 0:
    raise ValueError(f"compress_epochs (S) must be positive, got {compress_epochs}.")
  if not (isinstance(steps_per_epoch, int) and steps_per_epoch > 0):
    raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}; "
                     "use ceil(num_examples / batch_size).")
  boundaries: dict[int, float] = {}
  for d in schedule.decay_epochs:
    step = math.ceil(d / schedule.epochs * compress_epochs * steps_per_epoch - 1e-9)
    boundaries[step] = boundaries.get(step, 1.0) * schedule.decay_factor
  if not boundaries:
    return optax.constant_schedule(schedule.init_lr)
  return optax.piecewise_constant_schedule(schedule.init_lr, boundaries)
