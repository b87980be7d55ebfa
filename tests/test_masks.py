"""Masks: exact counts, ties, structure, apply, FisherMask and RandomMask."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmjax
from fmjax.fisher import FisherEstimate
from fmjax.masks import eligible_tree, mask_stats


def _params():
  return {"conv": {"kernel": jnp.arange(24.0).reshape(2, 3, 4), "bias": jnp.ones(4)},
          "dense": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}


def _count(mask):
  return int(sum(jnp.sum(m) for m in jax.tree.leaves(mask)))


@pytest.mark.parametrize("ratio", [0.01, 0.02, 0.1, 0.25, 0.5, 0.999, 1.0])
def test_exact_count(ratio):
  key = jax.random.key(0)
  scores = {"a": jax.random.normal(key, (37, 5)), "b": {"c": jax.random.normal(key, (101,))}}
  mask = fmjax.top_fraction_mask(scores, ratio)
  chex.assert_trees_all_equal_shapes(mask, scores)
  assert _count(mask) == round(ratio * 286)
  # The selection is the global top: every masked score >= every unmasked score.
  flat_s = np.concatenate([np.ravel(x) for x in jax.tree.leaves(scores)])
  flat_m = np.concatenate([np.ravel(x) for x in jax.tree.leaves(mask)])
  if 0 < flat_m.sum() < flat_m.size:
    assert flat_s[flat_m].min() >= flat_s[~flat_m].max()


def test_ties_break_by_leaf_then_row_major_order():
  scores = {"a": jnp.zeros((2, 2)), "b": jnp.zeros(3)}  # all tied; leaves sort as a, b
  mask = fmjax.top_fraction_mask(scores, 5 / 7)
  np.testing.assert_array_equal(mask["a"], [[True, True], [True, True]])
  np.testing.assert_array_equal(mask["b"], [True, False, False])
  scores = {"a": jnp.array([1.0, 2.0, 2.0]), "b": jnp.array([2.0, 0.0])}
  mask = fmjax.top_fraction_mask(scores, 2 / 5)
  np.testing.assert_array_equal(mask["a"], [False, True, True])
  np.testing.assert_array_equal(mask["b"], [False, False])


def test_apply_zeroes_exactly_the_selected_entries():
  params = jax.tree.map(lambda p: p + 1.0, _params())  # no zero to start with
  mask = fmjax.random_mask(jax.random.key(1), params, 0.3)
  masked = fmjax.apply_mask(params, mask)
  for p, m, q in zip(jax.tree.leaves(params), jax.tree.leaves(mask), jax.tree.leaves(masked),
                     strict=True):
    np.testing.assert_array_equal(q[m], 0.0)
    np.testing.assert_array_equal(q[~m], p[~m])
    assert q.dtype == p.dtype


def test_maskable_kernels_excludes_biases():
  params = _params()
  mask = fmjax.top_fraction_mask(jax.tree.map(lambda p: jnp.ones(p.shape), params), 0.5,
                                 maskable="kernels")
  assert not mask["conv"]["bias"].any() and not mask["dense"]["bias"].any()
  assert _count(mask) == round(0.5 * (24 + 8))
  eligible = eligible_tree(params, lambda path, leaf: path.startswith("dense"))
  assert eligible == {"conv": {"bias": False, "kernel": False},
                      "dense": {"bias": True, "kernel": True}}


def test_fisher_mask_picks_largest_forget_minus_remain():
  # Hand-made: F_f - F_r = [5, -1, 3 | 0, 4, -2]; the top 2 are entries 0 of 'a' and 1 of 'b'.
  forget = FisherEstimate({"a": jnp.array([6.0, 0.0, 4.0]), "b": jnp.array([1.0, 4.0, 0.0])}, 2)
  remain = FisherEstimate({"a": jnp.array([1.0, 1.0, 1.0]), "b": jnp.array([1.0, 0.0, 2.0])}, 10)
  mask = fmjax.fisher_mask(forget, remain, 2 / 6)
  np.testing.assert_array_equal(mask["a"], [True, False, False])
  np.testing.assert_array_equal(mask["b"], [False, True, False])
  scores = fmjax.fisher_mask_scores(forget, remain)
  np.testing.assert_allclose(scores["a"], [5, -1, 3])


def test_default_weighting_is_the_papers_sums():
  # Sums: F_f - F_r = [10 - 50, 4 - 0] -> entry 1. Means: [10/2 - 50/100, 2 - 0] -> entry 0.
  forget = FisherEstimate({"w": jnp.array([10.0, 4.0])}, 2)
  remain = FisherEstimate({"w": jnp.array([50.0, 0.0])}, 100)
  np.testing.assert_array_equal(fmjax.fisher_mask(forget, remain, 0.5)["w"], [False, True])
  np.testing.assert_array_equal(
      fmjax.fisher_mask(forget, remain, 0.5, weighting="sum")["w"], [False, True])
  np.testing.assert_array_equal(
      fmjax.fisher_mask(forget, remain, 0.5, weighting="mean")["w"], [True, False])


def test_random_mask_count_and_key():
  params = _params()
  a = fmjax.random_mask(jax.random.key(3), params, 0.25)
  b = fmjax.random_mask(jax.random.key(3), params, 0.25)
  c = fmjax.random_mask(jax.random.key(4), params, 0.25)
  assert _count(a) == round(0.25 * 38)
  chex.assert_trees_all_equal(a, b)
  assert any(bool(jnp.any(x != y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c), strict=True))


def test_random_mask_is_uniform():
  params = {"w": jnp.zeros(50)}
  hits = sum(np.asarray(fmjax.random_mask(jax.random.key(i), params, 0.2)["w"], int)
             for i in range(400))
  # Each entry is masked with probability 0.2: 80 of 400 expected, sd 8.
  assert hits.min() > 50 and hits.max() < 110


def test_mask_stats():
  mask = {"a": jnp.array([True, False, True, False]), "b": jnp.zeros((2, 3), bool)}
  stats = mask_stats(mask)
  assert [(s.path, s.masked, s.size) for s in stats] == [("a", 2, 4), ("b", 0, 6)]
  assert stats[0].fraction == 0.5
  table = fmjax.format_mask_stats(stats)
  assert "| a | 2 | 4 | 0.5000 |" in table and "| **total** | 2 | 10 | 0.2000 |" in table


class TestBadInput:

  @pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), "half"])
  def test_ratio_outside_unit_interval(self, ratio):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
      fmjax.top_fraction_mask({"w": jnp.ones(3)}, ratio)

  def test_scores_structure_differs_from_params(self):
    params = _params()
    with pytest.raises(ValueError, match=r"missing leaves \['dense/bias'\]"):
      fmjax.top_fraction_mask({"conv": params["conv"], "dense": {"kernel": jnp.ones((4, 2))}},
                              0.1, params=params)

  def test_mask_shape_differs_from_params(self):
    params = _params()
    mask = jax.tree.map(lambda p: jnp.zeros(p.shape, bool), params)
    mask["dense"]["kernel"] = jnp.zeros((2, 4), bool)
    with pytest.raises(ValueError, match=r"'dense/kernel' has shape \(2, 4\).*\(4, 2\)"):
      fmjax.apply_mask(params, mask)

  def test_non_boolean_mask(self):
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="boolean"):
      fmjax.apply_mask(params, {"w": jnp.array([1, 0, 1])})

  def test_nan_scores(self):
    with pytest.raises(ValueError, match="non-finite"):
      fmjax.top_fraction_mask({"w": jnp.array([1.0, jnp.nan])}, 0.5)

  def test_unknown_maskable(self):
    with pytest.raises(ValueError, match="maskable must be one of"):
      fmjax.top_fraction_mask({"w": jnp.ones(3)}, 0.5, maskable="convs")

  def test_fisher_estimates_of_different_models(self):
    with pytest.raises(ValueError, match="same params"):
      fmjax.fisher_mask_scores(FisherEstimate({"w": jnp.ones(3)}, 1),
                               FisherEstimate({"v": jnp.ones(3)}, 1))

  def test_unknown_weighting(self):
    est = FisherEstimate({"w": jnp.ones(3)}, 1)
    with pytest.raises(ValueError, match="weighting must be one of"):
      fmjax.fisher_mask_scores(est, est, weighting="max")
