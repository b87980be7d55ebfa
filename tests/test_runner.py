"""The one epoch loop: streams, stacking any procedure, the order and key rules."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fmjax import procedures, runner
from fmjax.procedures import CrossEntropy, NegGradPlusLoss, Procedure, Stage
from tests.conftest import TinyCNN, init_with_stats


def _data(n=48, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % classes).astype(np.int32)
  images = (rng.integers(0, 60, (n, 6, 6, 2)) + 40 * labels[:, None, None, None]).astype(
      np.uint8)
  return jnp.asarray(images), jnp.asarray(labels)


FORGET, REMAIN = np.arange(0, 48, 4), np.setdiff1d(np.arange(48), np.arange(0, 48, 4))
# Three stages: random labels on D_f, NegGrad+ pairs (remain with a cycled forget stream),
# and a stage that runs in epoch 1 only, so steps per epoch differ across epochs.
PROC = Procedure((Stage(CrossEntropy(), "forget", 5, random_labels=True),
                  Stage(NegGradPlusLoss(), "remain", 8, pair="forget", pair_batch_size=3,
                        coef=lambda e: 0.9 + 0.01 * e),
                  Stage(CrossEntropy(l1=True), "remain", 16, epochs=(1,), coef=1e-4)),
                 lr=0.05, momentum=0.9, weight_decay=5e-4)


def _runner(images, labels, seed, lr=0.05, freeze=None):
  proc = Procedure(PROC.stages, lr, momentum=0.9, weight_decay=5e-4)
  return runner.Runner(TinyCNN(num_classes=4), proc, images, labels,
                       {"remain": REMAIN, "forget": FORGET}, mean=0.0, std=1.0, seed=seed,
                       num_classes=4, augment=True, freeze=freeze)


def test_stacked_units_equal_each_unit_alone():
  """Three units (own seeds, rates, frozen sets) through random labels, a paired stream,
  and a stage of one epoch only: stacked equals alone, states and metrics."""
  images, labels = _data()
  model = TinyCNN(num_classes=4)
  params, state = init_with_stats(model, jnp.asarray(images[:8], jnp.float32) / 255.0)
  freeze = jax.tree.map(lambda p: jnp.arange(p.size).reshape(p.shape) % 3 == 0, params)
  free = jax.tree.map(jnp.zeros_like, freeze)   # stacked units all freeze, or none does
  units = [_runner(images, labels, 0, freeze=free), _runner(images, labels, 1, lr=0.02,
                                                            freeze=free),
           _runner(images, labels, 2, freeze=freeze)]
  alone, metrics = [], []
  for r in units:
    s, ms = r.init(params, state), []
    for epoch in (1, 2):
      s, m = r.epoch(s, epoch)
      ms.append(m)
    alone.append(s)
    metrics.append(ms)
  group = runner.stack(units)
  states = [r.init(params, state) for r in units]
  for epoch in (1, 2):
    states, ms = group.epoch(states, epoch)
    for u in range(3):
      assert ms[u]["step_losses"] == pytest.approx(metrics[u][epoch - 1]["step_losses"],
                                                   rel=1e-5, abs=1e-6)
      assert ms[u]["loss"] == pytest.approx(metrics[u][epoch - 1]["loss"], rel=1e-5)
  for got, want in zip(states, alone, strict=True):
    # atol 1e-4: TinyCNN's first conv bias feeds BatchNorm, so its true gradient is zero and
    # its values (~3e-5) are rounding noise that the batched sums order differently.
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-4)
  assert units[0].steps(1) == 3 + 5 + 3 and units[0].steps(2) == 3 + 5   # stage 3: epoch 1
  assert units[1].last_lr(2) == pytest.approx(0.02)
  # Frozen entries of unit 2 never moved, stacked or not.
  for p, s, f in zip(jax.tree.leaves(params), jax.tree.leaves(states[2].params),
                     jax.tree.leaves(freeze), strict=True):
    np.testing.assert_array_equal(np.asarray(s)[np.asarray(f)], np.asarray(p)[np.asarray(f)])


def test_orders_keys_and_pairs_follow_the_documented_rules():
  images, labels = _data()
  r = _runner(images, labels, 7)
  steps = list(r.inputs(2))
  assert [x.stage for x in steps] == [0] * 3 + [1] * 5   # stage 2 runs in epoch 1 only
  rng = np.random.default_rng([7, 2])   # stage 0 draws as a one-stage run does
  order = FORGET[rng.permutation(len(FORGET))]
  np.testing.assert_array_equal(steps[0].idx, order[:5])
  np.testing.assert_array_equal(steps[2].idx, np.concatenate([order[10:], order[:3]]))  # fill
  rng = np.random.default_rng([7, 2, 1])
  remain_order = REMAIN[rng.permutation(len(REMAIN))]
  pair_order = FORGET[rng.permutation(len(FORGET))]   # the same generator's next draw
  np.testing.assert_array_equal(steps[3].idx, remain_order[:8])
  np.testing.assert_array_equal(steps[7].pair_idx, np.take(pair_order, np.arange(12, 15),
                                                           mode="wrap"))   # cycled
  first = r.first_step(2)
  assert first == 11
  for t, x in enumerate(steps):
    assert jnp.array_equal(jax.random.key_data(x.key),
                           jax.random.key_data(jax.random.fold_in(r.key, first + t)))
  assert steps[4].coef == np.float32(0.92)
  short = np.arange(10)
  assert list(runner.step_indices(short, 2, 4, "short")) == [8, 9]
  assert list(runner.step_indices(short, 2, 4, "fill")) == [8, 9, 0, 1]


def test_a_forget_only_procedure_needs_no_remain_and_a_missing_stream_is_named():
  images, labels = _data()
  model = TinyCNN(num_classes=4)
  ascent = Procedure((Stage(CrossEntropy(), "forget", 4),), 0.01)
  r = runner.Runner(model, ascent, images, labels, {"forget": FORGET, "remain": None},
                    mean=0.0, std=1.0, seed=0)
  params, state = init_with_stats(model, jnp.asarray(images[:8], jnp.float32) / 255.0)
  _, m = r.epoch(r.init(params, state), 1)
  assert len(m["step_losses"]) == 3
  with pytest.raises(ValueError, match="trains on the 'remain' data and the run has none "
                                       r"\(no_remain\)"):
    runner.Runner(model, PROC, images, labels, {"forget": FORGET, "remain": None}, mean=0.0,
                  std=1.0, seed=0, num_classes=4)
  with pytest.raises(ValueError, match="needs the original model as its teacher"):
    runner.Runner(model, Procedure(PROC.stages, 0.1, teacher=True), images, labels,
                  {"forget": FORGET, "remain": REMAIN}, mean=0.0, std=1.0, seed=0,
                  num_classes=4)
  with pytest.raises(ValueError, match="pair stream needs pair_batch_size"):
    Stage(CrossEntropy(), "remain", 4, pair="forget")
  with pytest.raises(ValueError, match="last_batch must be 'fill' or 'short'"):
    Stage(CrossEntropy(), "remain", 4, last_batch="drop")
  assert PROC.streams == {"remain", "forget"}
  assert isinstance(procedures.Budget(1, 0.1, 8).procedure(ascent.stages), Procedure)


def test_stages_and_procedures_refuse_bad_settings_by_name():
  """Survivors of make mutants: the refusals of a Stage and a Procedure, at their bounds."""
  from fmjax.procedures import CrossEntropy, Procedure, Stage
  ok = Stage(CrossEntropy(), "remain", 1)
  with pytest.raises(ValueError, match="stage batch sizes must be >= 1"):
    Stage(CrossEntropy(), "remain", 0)
  with pytest.raises(ValueError, match="needs pair_batch_size"):
    Stage(CrossEntropy(), "remain", 4, pair="forget")
  assert Stage(CrossEntropy(), "remain", 4, pair="forget", pair_batch_size=1).streams == (
      "remain", "forget")
  with pytest.raises(ValueError, match="must name an index set"):
    Stage(CrossEntropy(), "", 4)
  with pytest.raises(ValueError, match="at least one stage"):
    Procedure((), 0.1)
  with pytest.raises(ValueError, match="learning rate must be > 0, got 0"):
    Procedure((ok,), 0.0)
  with pytest.raises(ValueError, match="momentum and weight decay must be >= 0"):
    Procedure((ok,), 0.1, momentum=-0.1)
  with pytest.raises(ValueError, match="momentum and weight decay must be >= 0"):
    Procedure((ok,), 0.1, weight_decay=-1e-4)
  p = Procedure((ok,), 0.1, momentum=0.0, weight_decay=0.0, info={"a": 1})   # the bounds
  assert not p.teacher and p == Procedure((ok,), 0.1, momentum=0.0, weight_decay=0.0)
  with pytest.raises(dataclasses.FrozenInstanceError):
    p.lr = 0.2
