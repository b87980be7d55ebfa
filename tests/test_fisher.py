"""fisher_diag against brute force: Python loops, explicit Fisher matrices."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    CustomParam,
    SharedDense,
    TinyCNN,
    TinyMLP,
    init_with_stats,
    loop_fisher,
    rel_error,
)
from jax.flatten_util import ravel_pytree

import fmjax
from fmjax.models import resnet20


@pytest.mark.parametrize("path", ["per_layer", "vmap"])
@pytest.mark.parametrize("setup", ["mlp_setup", "cnn_setup"])
def test_matches_float64_loop(setup, path, request):
  model, params, state, x, y = request.getfixturevalue(setup)
  fisher_diag = fmjax.make_fisher_diag(model, state, path=path)
  got = fisher_diag(params, {"image": x, "label": y})
  want = loop_fisher(model, params, state, x, y)
  chex.assert_trees_all_equal_shapes(got, params)
  chex.assert_trees_all_equal_dtypes(got, params)
  assert rel_error(got, want) < 1e-5
  # Per leaf too, so that a small leaf cannot hide behind a large one.
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-7 * np.abs(w).max())


@pytest.mark.parametrize("path", ["per_layer", "vmap"])
def test_exact_in_float64(cnn_setup, path):
  """With float64 params the paths equal the loop to rounding (algorithm, not precision)."""
  model, params, state, x, y = cnn_setup
  want = loop_fisher(model, params, state, x, y)
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
    s64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), state)
    got = fmjax.make_fisher_diag(model, s64, path=path)(
        p64, {"image": jnp.asarray(np.asarray(x), jnp.float64), "label": y})
    chex.assert_trees_all_equal_dtypes(got, p64)
  assert rel_error(got, want) < 1e-12


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_equals_diagonal_of_explicit_fisher_matrix(kind):
  """diag((1/N) sum_n J_n^T J_n) with J from jax.jacobian of the flat params."""
  model = TinyMLP(num_classes=3)
  x = jax.random.normal(jax.random.key(5), (6, 4))
  y = jax.random.randint(jax.random.key(6), (6,), 0, 3)
  params, _ = init_with_stats(model, x)
  flat, unravel = ravel_pytree(params)

  def log_probs(theta):  # [N, K]
    return jax.nn.log_softmax(model.apply({"params": unravel(theta)}, x))

  jac = jax.jacobian(log_probs)(flat)            # [N, K, P]
  probs = jnp.exp(log_probs(flat))               # [N, K]
  if kind == "empirical":
    j = jac[jnp.arange(6), y]                    # [N, P]
    matrix = j.T @ j / 6
  else:
    matrix = jnp.einsum("nk,nkp,nkq->pq", probs, jac, jac) / 6
  want = unravel(jnp.diag(matrix))
  for path in ("per_layer", "vmap"):
    got = fmjax.make_fisher_diag(model, kind=kind, path=path)(params, {"image": x, "label": y})
    assert rel_error(got, want) < 1e-5, path


@pytest.mark.parametrize("path", ["per_layer", "vmap"])
def test_true_fisher_matches_loop_over_classes(cnn_setup, path):
  model, params, state, x, y = cnn_setup
  got = fmjax.make_fisher_diag(model, state, kind="true", path=path)(
      params, {"image": x, "label": y})
  want = loop_fisher(model, params, state, x, y, kind="true")
  assert rel_error(got, want) < 1e-5
  empirical = fmjax.make_fisher_diag(model, state)(params, {"image": x, "label": y})
  assert rel_error(empirical, want) > 1e-2  # the option really changes the quantity


@pytest.mark.parametrize("path", ["per_layer", "vmap"])
def test_true_fisher_of_many_classes_loops_over_class_chunks_exactly(path):
  """23 classes, one a step of the loop, against the float64 loop."""
  model = TinyCNN(num_classes=23)
  x = jax.random.normal(jax.random.key(5), (5, 6, 6, 2))
  y = jax.random.randint(jax.random.key(6), (5,), 0, 23)
  params, state = init_with_stats(model, x)
  fd = fmjax.make_fisher_diag(model, state, kind="true", path=path)
  got = fd(params, {"image": x, "label": y})
  assert rel_error(got, loop_fisher(model, params, state, x, y, kind="true")) < 1e-5
  # The loop really runs: the compiled program has a while loop over the chunks.
  text = jax.jit(lambda p: fd(p, {"image": x, "label": y})).lower(params).as_text()
  assert "while" in text


@pytest.mark.parametrize("path", ["per_layer", "vmap"])
def test_the_true_fishers_memory_does_not_grow_with_the_class_count(path):
  """10 classes (CIFAR-10, MNIST) loop too: the compiled true-Fisher block needs about the
  empirical block's temporaries, not ten times them (batched over all classes, GoogLeNet
  on CIFAR-10 asked for 75 GB; make bench-memory). XLA's memory analysis of the programs,
  nothing run."""
  model = TinyCNN(num_classes=10)
  x = jnp.zeros((16, 12, 12, 2))
  params, state = init_with_stats(model, x)
  y, w = jnp.zeros((16,), jnp.int32), jnp.ones((16,))

  def temp_bytes(kind):
    fd = fmjax.make_fisher_diag(model, state, kind=kind, path=path, chunk_size=16)
    compiled = fd.kernel.lower(params, state, x, y, w).compile()
    assert "while" in compiled.as_text() or kind == "empirical"
    return compiled.memory_analysis().temp_size_in_bytes
  assert temp_bytes("true") < 2.5 * temp_bytes("empirical")


@pytest.mark.parametrize("per_step", [1, 3, 10])
def test_the_class_loop_sums_every_class_once_and_pads_with_zeros(per_step):
  from fmjax.fisher._classes import class_chunked
  weights = jnp.arange(1.0, 24.0)   # 23 classes
  got = class_chunked(lambda c: jnp.sum(jax.nn.one_hot(c, 23) @ weights), 23,
                      per_step=per_step)
  assert float(got) == float(weights.sum())


@pytest.mark.parametrize("path", ["per_layer", "vmap"])
def test_chunk_sizes_agree(cnn_setup, path):
  model, params, state, x, y = cnn_setup   # 7 examples: chunks of 3 leave a ragged one
  batch = {"image": x, "label": y}
  results = [fmjax.make_fisher_diag(model, state, chunk_size=c, path=path)(params, batch)
             for c in (1, 3, 7)]
  for r in results[1:]:
    chex.assert_trees_all_close(r, results[0], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("path", ["per_layer", "vmap"])
def test_a_block_above_the_micro_chunk_sums_every_example(path):
  """A block of 45 examples (above MICRO_CHUNK = 32, not a multiple of it: one full
  micro-chunk and a ragged one) equals blocks of 1 and the float64 loop (planted: the last
  micro-chunk dropped)."""
  from fmjax.fisher._api import MICRO_CHUNK
  assert 32 < 45 < 2 * MICRO_CHUNK and 45 % MICRO_CHUNK
  model = TinyMLP()
  x = jax.random.normal(jax.random.key(5), (45, 4))
  y = jax.random.randint(jax.random.key(6), (45,), 0, 3)
  params, state = init_with_stats(model, x)
  batch = {"image": x, "label": y}
  block = fmjax.make_fisher_diag(model, state, chunk_size=45, path=path)(params, batch)
  ones = fmjax.make_fisher_diag(model, state, chunk_size=1, path=path)(params, batch)
  chex.assert_trees_all_close(block, ones, rtol=1e-5, atol=1e-9)
  assert rel_error(block, loop_fisher(model, params, state, x, y)) < 1e-5


def test_dataset_mean_is_exact_with_ragged_batches(cnn_setup):
  model, params, state, x, y = cnn_setup
  fisher_diag = fmjax.make_fisher_diag(model, state)
  before = fisher_diag.kernel._cache_size()   # the kernel is shared by equal settings
  batches = [{"image": x[i:i + 3], "label": y[i:i + 3]} for i in range(0, 7, 3)]  # 3, 3, 1
  estimate = fmjax.accumulate_fisher_diag(fisher_diag, params, batches)
  assert int(estimate.count) == 7
  chex.assert_trees_all_close(estimate.mean(), loop_fisher(model, params, state, x, y),
                              rtol=2e-5, atol=1e-9)
  whole = fisher_diag.sum(params, {"image": x, "label": y})
  chex.assert_trees_all_close(estimate.total, whole.total, rtol=1e-5, atol=1e-8)
  assert fisher_diag.kernel._cache_size() <= before + 2  # blocks of 3 (padded ragged) and 7


def test_no_retrace_on_second_call(cnn_setup):
  model, params, state, x, y = cnn_setup
  fisher_diag = fmjax.make_fisher_diag(model, state, chunk_size=4)
  batch = {"image": x, "label": y}
  first = fisher_diag(params, batch)
  size = fisher_diag.kernel._cache_size()
  moved = jax.tree.map(lambda p: p * 1.01, params)
  second = fisher_diag(moved, batch)
  assert fisher_diag.kernel._cache_size() == size
  again = fmjax.make_fisher_diag(model, state, chunk_size=4)   # same settings: shared kernel
  chex.assert_trees_all_close(again(params, batch), first)
  assert again.kernel is fisher_diag.kernel and again.kernel._cache_size() == size
  assert rel_error(second, first) > 1e-4


def test_weights_drop_examples(cnn_setup):
  model, params, state, x, y = cnn_setup
  fisher_diag = fmjax.make_fisher_diag(model, state)
  w = jnp.array([1, 1, 0, 1, 0, 0, 1], jnp.float32)
  est = fisher_diag.sum(params, {"image": x, "label": y}, w)
  keep = np.flatnonzero(np.asarray(w))
  want = loop_fisher(model, params, state, x[keep], y[keep])
  assert float(est.count) == 4
  assert rel_error(est.mean(), want) < 1e-5


@pytest.mark.parametrize("kind", ["empirical", "true"])
@pytest.mark.parametrize("path", ["per_layer", "vmap"])
def test_fractional_weights_multiply_each_examples_contribution(cnn_setup, path, kind):
  """sum(params, batch, w) == sum_n w_n * (the example's own Fisher), by a float64 loop."""
  model, params, state, x, y = cnn_setup
  w = np.array([0.5, 2.0, 0.0, 1.0, 0.25, 3.0, 1.5], np.float32)
  est = fmjax.make_fisher_diag(model, state, path=path, kind=kind).sum(
      params, {"image": x, "label": y}, jnp.asarray(w))
  per_example = [loop_fisher(model, params, state, x[n:n + 1], y[n:n + 1], kind=kind)
                 for n in range(len(w))]
  want = jax.tree.map(lambda *leaves: sum(wn * leaf for wn, leaf in zip(w, leaves, strict=True)),
                      *per_example)
  assert float(est.count) == pytest.approx(w.sum())
  assert rel_error(est.total, want) < 1e-5
  # All weights 0.5: exactly half the unweighted total (the reported disagreement).
  fd = fmjax.make_fisher_diag(model, state, path=path, kind=kind)
  half = fd.sum(params, {"image": x, "label": y}, jnp.full(len(w), 0.5))
  full = fd.sum(params, {"image": x, "label": y})
  assert rel_error(half.total, jax.tree.map(lambda a: 0.5 * a, full.total)) < 1e-6


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_negative_or_nan_weights_are_refused(cnn_setup, bad):
  model, params, state, x, y = cnn_setup
  w = jnp.ones(len(y)).at[2].set(bad)
  with pytest.raises(ValueError, match="weights must be non-negative and finite"):
    fmjax.make_fisher_diag(model, state).sum(params, {"image": x, "label": y}, w)


def test_low_precision_params_accumulate_in_float32(mlp_setup):
  model, params, state, x, y = mlp_setup
  bf16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
  got = fmjax.make_fisher_diag(model)(bf16, {"image": x.astype(jnp.bfloat16), "label": y})
  for leaf in jax.tree.leaves(got):
    assert leaf.dtype == jnp.float32
  want = loop_fisher(model, bf16, state, x.astype(jnp.bfloat16), y)
  assert rel_error(got, want) < 5e-2  # bf16 forward pass; float32 squares and sums


@pytest.mark.long
def test_resnet20_per_layer_equals_vmap():
  model = resnet20(num_classes=5)
  x = jax.random.normal(jax.random.key(7), (4, 8, 8, 3))
  y = jnp.array([0, 4, 2, 2])
  params, state = init_with_stats(model, x)
  fast = fmjax.make_fisher_diag(model, state)
  assert fast.describe(params, {"image": x, "label": y}) == fmjax.PathInfo("per_layer", None)
  ref = fmjax.make_fisher_diag(model, state, path="vmap")
  for kind in ("empirical", "true"):
    fast = fmjax.make_fisher_diag(model, state, kind=kind)
    ref = fmjax.make_fisher_diag(model, state, kind=kind, path="vmap")
    batch = {"image": x, "label": y}
    assert rel_error(fast(params, batch), ref(params, batch)) < 1e-5


@pytest.mark.parametrize("model, why", [(SharedDense(), "more than once"),
                                        (CustomParam(), "temperature")])
def test_auto_falls_back_to_vmap_and_says_why(model, why):
  x = jax.random.normal(jax.random.key(8), (5, 3))
  y = jnp.array([0, 1, 2, 0, 1])
  params, state = init_with_stats(model, x)
  batch = {"image": x, "label": y}
  fisher_diag = fmjax.make_fisher_diag(model, state)
  info = fisher_diag.describe(params, batch)
  assert info.path == "vmap" and why in info.reason
  assert rel_error(fisher_diag(params, batch), loop_fisher(model, params, state, x, y)) < 1e-5
  with pytest.raises(ValueError, match="does not apply"):
    fmjax.make_fisher_diag(model, state, path="per_layer")(params, batch)


def test_plain_logits_function():
  model = TinyMLP()
  x = jax.random.normal(jax.random.key(9), (5, 4))
  y = jnp.array([0, 1, 2, 0, 1])
  params, _ = init_with_stats(model, x)
  fn = fmjax.make_fisher_diag(lambda p, imgs: model.apply({"params": p}, imgs))
  assert fn.describe(params, {"image": x, "label": y}).path == "vmap"
  assert rel_error(fn(params, {"image": x, "label": y}),
                   loop_fisher(model, params, {}, x, y)) < 1e-5


def test_training_mode_batchnorm_is_refused(cnn_setup):
  model, params, state, x, y = cnn_setup
  fn = fmjax.make_fisher_diag(model, state, apply_kwargs={"train": True}, path="per_layer")
  with pytest.raises(ValueError, match="inference mode.*train.: False"):
    fn(params, {"image": x, "label": y})


class TestBadInput:

  def test_batch_without_label(self, cnn_setup):
    model, params, state, x, _ = cnn_setup
    with pytest.raises(ValueError, match=r"missing \['label'\].*rename"):
      fmjax.make_fisher_diag(model, state)(params, {"image": x})

  def test_batch_not_a_mapping(self, cnn_setup):
    model, params, state, x, y = cnn_setup
    with pytest.raises(ValueError, match="must be a mapping"):
      fmjax.make_fisher_diag(model, state)(params, (x, y))

  def test_labels_out_of_range(self, cnn_setup):
    model, params, state, x, y = cnn_setup
    with pytest.raises(ValueError, match=r"values in \[0, 4\].*outputs 4 classes"):
      fmjax.make_fisher_diag(model, state)(params, {"image": x, "label": y.at[0].set(4)})

  def test_one_hot_labels(self, cnn_setup):
    model, params, state, x, y = cnn_setup
    with pytest.raises(ValueError, match="not one-hot"):
      fmjax.make_fisher_diag(model, state)(params, {"image": x,
                                                    "label": jax.nn.one_hot(y, 4)})

  def test_mismatched_batch_sizes(self, cnn_setup):
    model, params, state, x, y = cnn_setup
    with pytest.raises(ValueError, match="leading batch axis"):
      fmjax.make_fisher_diag(model, state)(params, {"image": x[:3], "label": y})

  def test_non_finite_fisher(self, cnn_setup):
    model, params, state, x, y = cnn_setup
    broken = jax.tree.map(lambda p: p.at[(0,) * p.ndim].set(jnp.nan), params)
    with pytest.raises(ValueError, match="non-finite.*NaN"):
      fmjax.make_fisher_diag(model, state)(broken, {"image": x, "label": y})

  @pytest.mark.parametrize("kwargs, match", [({"kind": "fisher"}, "kind must be one of"),
                                             ({"path": "fast"}, "path must be one of"),
                                             ({"chunk_size": 0}, "positive integer")])
  def test_bad_options(self, kwargs, match):
    with pytest.raises(ValueError, match=match):
      fmjax.make_fisher_diag(TinyMLP(), **kwargs)

  def test_the_per_layer_path_needs_a_flax_module(self):
    """(A survivor of make mutants: the check's ``==`` turned into ``>``.)"""
    with pytest.raises(ValueError, match="path='per_layer' needs a flax.linen Module"):
      fmjax.make_fisher_diag(lambda p, x: x @ p, path="per_layer")

  def test_progress_is_keyword_only(self, mlp_setup):
    """``accumulate_fisher_diag(fd, params, batches, True)`` would read True as a batch
    option; it is refused (a survivor of make mutants: ``*`` turned into ``/``)."""
    model, params, state, x, y = mlp_setup
    with pytest.raises(TypeError):
      fmjax.accumulate_fisher_diag(fmjax.make_fisher_diag(model), params,
                                   [{"image": x, "label": y}], False)

  def test_params_passed_as_state(self, mlp_setup):
    model, params, _, _, _ = mlp_setup
    with pytest.raises(ValueError, match="non-parameter collections"):
      fmjax.make_fisher_diag(model, {"params": params})

  def test_empty_dataset(self, mlp_setup):
    model, params, state, x, y = mlp_setup
    with pytest.raises(ValueError, match="no examples"):
      fmjax.accumulate_fisher_diag(fmjax.make_fisher_diag(model), params,
                                   [{"image": x[:0], "label": y[:0]}])


def test_tiny_cnn_uses_per_layer(cnn_setup):
  """'auto' takes the per-layer formulas on Conv/BatchNorm/Dense models: it says so, and its
  result is the forced per-layer path's, bit for bit."""
  model, params, state, x, y = cnn_setup
  batch = {"image": x, "label": y}
  auto = fmjax.make_fisher_diag(model, state)
  assert auto.describe(params, batch) == fmjax.PathInfo("per_layer", None)
  chex.assert_trees_all_equal(auto(params, batch), fmjax.make_fisher_diag(
      model, state, path="per_layer")(params, batch))


def test_fisher_estimates_add_as_sums_over_their_examples(cnn_setup):
  """Two halves' sums add to the whole's sum and count (a survivor of make mutants: the
  type check of ``+`` inverted); adding anything else is refused."""
  model, params, state, x, y = cnn_setup
  fd = fmjax.make_fisher_diag(model, state)
  whole = fd.sum(params, {"image": x, "label": y})
  halves = (fd.sum(params, {"image": x[:3], "label": y[:3]})
            + fd.sum(params, {"image": x[3:], "label": y[3:]}))
  assert float(halves.count) == float(whole.count) == 7
  chex.assert_trees_all_close(halves.total, whole.total, rtol=1e-5, atol=1e-9)
  with pytest.raises(TypeError):
    whole + 1.0
