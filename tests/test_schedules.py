"""The compressed schedule, step by step, for the paper's settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fmjax
from fmjax.schedules import StepSchedule


def _reference_rate(schedule, s, steps_per_epoch, step):
  """Brute force: the rate in effect at the start of update ``step``."""
  epoch_position = step / steps_per_epoch
  decays = sum(1 for d in schedule.decay_epochs
               if epoch_position >= d / schedule.epochs * s)
  return schedule.init_lr * schedule.decay_factor ** decays


# CIFAR-10 remain set (45,000 examples, batch 128) and full training set (50,000).
@pytest.mark.parametrize("steps_per_epoch", [math.ceil(45000 / 128), math.ceil(50000 / 128), 7])
def test_cifar_every_step(steps_per_epoch):
  sched = fmjax.compressed_schedule(fmjax.CIFAR_SCHEDULE, 5, steps_per_epoch)
  steps = np.arange(8 * steps_per_epoch)  # S = 5 epochs, then 3 more at the last rate
  got = np.array([float(sched(k)) for k in steps])
  want = np.array([_reference_rate(fmjax.CIFAR_SCHEDULE, 5, steps_per_epoch, k)
                   for k in steps])
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert set(np.round(got, 6)) == {0.1, 0.01, 0.001}


def test_cifar_boundaries_at_2_5_and_3_75_epochs():
  sched = fmjax.compressed_schedule(fmjax.CIFAR_SCHEDULE, 5, 100)
  assert [round(float(sched(k)), 6) for k in (0, 249, 250, 374, 375, 499, 500, 10**6)] == [
      0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001]


def test_mnist_is_constant():
  sched = fmjax.compressed_schedule(fmjax.MNIST_SCHEDULE, 5, 422)
  np.testing.assert_allclose([float(sched(k)) for k in range(0, 10 * 422, 7)], 0.01)


def test_original_schedule_decays_at_epochs_80_and_120():
  sched = fmjax.step_schedule(fmjax.CIFAR_SCHEDULE, 391)
  for k in range(0, 160 * 391, 97):
    assert float(sched(k)) == pytest.approx(_reference_rate(fmjax.CIFAR_SCHEDULE, 160, 391, k))
  assert float(sched(80 * 391 - 1)) == pytest.approx(0.1)
  assert float(sched(80 * 391)) == pytest.approx(0.01)



@pytest.mark.parametrize("kwargs, match", [
    ({"init_lr": 0.0, "epochs": 10}, "init_lr must be positive"),
    ({"init_lr": 0.1, "epochs": 10, "decay_epochs": (12,)}, "strictly between"),
    ({"init_lr": 0.1, "epochs": 10, "decay_epochs": (6, 3)}, "increasing"),
    ({"init_lr": 0.1, "epochs": 0}, "positive integer"),
])
def test_bad_schedule(kwargs, match):
  with pytest.raises(ValueError, match=match):
    StepSchedule(**kwargs)


@pytest.mark.parametrize("s, spe, match", [(0, 10, "compress_epochs"),
                                           (5, 0, "steps_per_epoch"),
                                           (5, 2.5, "steps_per_epoch")])
def test_bad_compression(s, spe, match):
  with pytest.raises(ValueError, match=match):
    fmjax.compressed_schedule(fmjax.CIFAR_SCHEDULE, s, spe)
