"""The paper's successors: each method's rule against a hand computation on tiny models."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fmjax import procedures, readouts, steps
from fmjax import runner as runner_lib
from fmjax.methods import SCRUB, L1Sparse, SalUn
from fmjax.methods._gradients import mean_loss_grad
from fmjax.methods.l1_sparse import penalty_weight
from fmjax.methods.salun import saliency_mask
from fmjax.methods.ssd import batch_importance, ssd_dampen
from fmjax.procedures import Procedure, Stage
from tests.conftest import TinyCNN, TinyMLP, init_with_stats

# --- SSD --------------------------------------------------------------------------------------

def test_ssd_selects_and_dampens_exactly_as_eqs_3_and_4():
  params = {"w": jnp.array([2.0, -4.0, 1.0, 3.0, 5.0, -1.0])}
  i_f = {"w": jnp.array([10.0, 50.0, 0.5, 0.0, 30.0, 21.0])}
  i_d = {"w": jnp.array([2.0, 1.0, 1.0, 0.0, 3.0, 2.0])}
  # alpha = 10: selected where I_f > 10 * I_D: entries 1 (50 > 10), 5 (21 > 20); entry 4 is
  # 30 > 30? no (strict); entry 3 is 0 > 0? no. Dampening min(lambda * I_D / I_f, 1).
  new, sel = ssd_dampen(params, i_f, i_d, alpha=10.0, lam=1.0)
  np.testing.assert_array_equal(sel["w"], [False, True, False, False, False, True])
  np.testing.assert_allclose(new["w"], [2.0, -4.0 * 1 / 50, 1.0, 3.0, 5.0, -1.0 * 2 / 21],
                             rtol=1e-6)
  # lambda large: the factor is capped at 1 (a parameter never grows).
  new, _ = ssd_dampen(params, i_f, i_d, alpha=10.0, lam=100.0)
  np.testing.assert_array_equal(new["w"], params["w"])
  # alpha = 1: more selected, lambda = 0.5 halves the ratio.
  new, sel = ssd_dampen(params, i_f, i_d, alpha=1.0, lam=0.5)
  np.testing.assert_array_equal(sel["w"], [True, True, False, False, True, True])
  np.testing.assert_allclose(new["w"], [2.0 * 0.1, -4.0 * 0.01, 1.0, 3.0, 5.0 * 0.05,
                                        -1.0 / 21], rtol=1e-6)


def test_ssd_batch_importance_is_the_mean_of_squared_batch_mean_gradients(mlp_setup):
  from fmjax.task import UnlearnTask
  model, params, state, _, _ = mlp_setup
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (10, 2, 2, 1), dtype=np.uint8)
  labels = rng.integers(0, 3, 10)
  task = UnlearnTask(images, labels, np.arange(3), np.arange(3, 10), images[:2], labels[:2], 3,
                     0.0, 1.0)
  got = batch_importance(model, params, state, task, np.arange(10), 4)
  want = None
  for lo in (0, 4, 8):   # batches 4, 4, 2 (a ragged last batch counts as one batch)
    x = jnp.asarray(images[lo:lo + 4], jnp.float32) / 255.0
    g = jax.grad(lambda p, x=x, lo=lo: steps.cross_entropy(
        model.apply({"params": p, **state}, x), jnp.asarray(labels[lo:lo + 4])))(params)
    sq = jax.tree.map(jnp.square, g)
    want = sq if want is None else jax.tree.map(jnp.add, want, sq)
  chex.assert_trees_all_close(got, jax.tree.map(lambda t: t / 3, want), rtol=1e-5)


# --- SalUn ------------------------------------------------------------------------------------

def test_salun_threshold_keeps_the_top_fraction_of_gradient_magnitudes():
  grad = {"a": jnp.array([0.1, -5.0, 0.3]), "b": jnp.array([[2.0, -0.2], [0.05, -1.0]])}
  salient = saliency_mask(grad, 3 / 7)
  # |g| sorted: 5.0, 2.0, 1.0 | 0.3, 0.2, 0.1, 0.05 -> one global threshold at 1.0.
  np.testing.assert_array_equal(salient["a"], [False, True, False])
  np.testing.assert_array_equal(salient["b"], [[True, False], [False, True]])


def _digits_like(n=40, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % classes
  images = (rng.integers(0, 60, (n, 6, 6, 2)) + 40 * labels[:, None, None, None]).astype(
      np.uint8)
  return images, labels


def test_salun_non_salient_weights_and_their_momentum_never_move():
  model = TinyCNN()
  images, labels = _digits_like()
  params, state = init_with_stats(model, jnp.asarray(images[:8], jnp.float32) / 255.0)
  forget, remain = np.arange(0, 40, 4), np.setdiff1d(np.arange(40), np.arange(0, 40, 4))
  grad = mean_loss_grad(model, params, state, [
      {"image": jnp.asarray(images[forget], jnp.float32) / 255.0,
       "label": jnp.asarray(labels[forget])}])
  salient = saliency_mask(grad, 0.5)
  freeze = jax.tree.map(jnp.logical_not, salient)
  proc = SalUn().procedure(None, procedures.Budget(2, 0.5, 8, momentum=0.9,
                                                             weight_decay=5e-4))
  runner = runner_lib.Runner(model, proc, jnp.asarray(images), jnp.asarray(labels),
                             {"remain": remain, "forget": forget}, num_classes=4, mean=0.0,
                             std=1.0, seed=0, freeze=freeze)
  start = runner.init(params, state)
  end, _ = runner.epoch(start, 1)
  end, _ = runner.epoch(end, 2)
  moved = jax.tree.map(lambda a, b: a != b, start.params, end.params)
  for m, f in zip(jax.tree.leaves(moved), jax.tree.leaves(freeze), strict=True):
    assert not np.any(np.asarray(m) & np.asarray(f))     # frozen: bit-identical
  assert any(np.any(np.asarray(m)) for m in jax.tree.leaves(moved))   # salient ones trained
  momentum = end.opt_state[2].trace   # chain: decay, zero, trace, scale, zero
  for t, f in zip(jax.tree.leaves(momentum), jax.tree.leaves(freeze), strict=True):
    assert np.all(np.asarray(t)[np.asarray(f)] == 0.0)


# --- SCRUB ------------------------------------------------------------------------------------

def _kl(model, params, teacher, x, t=4.0):
  return float(procedures.distill_kl(model.apply({"params": params}, x),
                                     model.apply({"params": teacher}, x), t))


def test_distill_kl_matches_its_formula():
  s = jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
  t = jnp.array([[0.0, 1.0, 0.0], [2.0, -1.0, 0.0]])
  ps, pt = jax.nn.softmax(s / 2.0), jax.nn.softmax(t / 2.0)
  want = float(np.sum(pt * np.log(pt / ps)) / 2 * 4.0)
  assert float(procedures.distill_kl(s, t, 2.0)) == pytest.approx(want, rel=1e-6)
  assert float(procedures.distill_kl(t, t, 2.0)) == pytest.approx(0.0, abs=1e-7)


def test_scrub_max_step_raises_and_min_step_lowers_the_kl(mlp_setup):
  model, teacher, state, x, y = mlp_setup
  student = jax.tree.map(lambda p: p + 0.3 * jnp.sign(p), teacher)   # start away from it
  batch = {"image": x, "label": y}

  def step(objective, params):
    g = jax.grad(lambda p: objective(model, p, state, batch, None, (teacher, state), 0.0)[0])(
        params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, g)

  before = _kl(model, student, teacher, x)
  assert _kl(model, step(procedures.ScrubMax(4.0), student), teacher, x) > before
  assert _kl(model, step(procedures.ScrubMin(4.0, 0.0, 1.0), student), teacher, x) < before


def test_scrub_runs_max_steps_only_in_its_first_epochs():
  proc = _scrub_procedure(epochs=3)
  assert [s.runs_in(1) for s in proc.stages] == [True, True]
  assert [s.runs_in(3) for s in proc.stages] == [False, True]
  assert proc.teacher


def _scrub_procedure(epochs):
  return SCRUB().procedure(None, procedures.Budget(epochs, 5e-4, 128))


# --- l1-sparse --------------------------------------------------------------------------------

def test_l1_penalty_decays_linearly_from_gamma_to_gamma_over_t():
  assert [penalty_weight(1e-3, e, 4) for e in (1, 2, 3, 4)] == pytest.approx(
      [1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
  proc = L1Sparse().procedure(None, procedures.Budget(5, 0.01, 32))
  assert [proc.stages[0].coef_at(e) for e in range(1, 6)] == pytest.approx(
      [5e-4, 4e-4, 3e-4, 2e-4, 1e-4])


def test_l1_objective_adds_coef_times_the_l1_norm(mlp_setup):
  model, params, state, x, y = mlp_setup
  batch = {"image": x, "label": y}
  plain, _ = procedures.CrossEntropy()(model, params, state, batch, None, None, 0.3)
  with_l1, _ = procedures.CrossEntropy(l1=True)(model, params, state, batch, None, None, 0.3)
  norm = sum(float(np.abs(np.asarray(p)).sum()) for p in jax.tree.leaves(params))
  assert float(with_l1 - plain) == pytest.approx(0.3 * norm, rel=1e-5)


# --- NegGrad+ ---------------------------------------------------------------------------------

def test_neggrad_plus_gradient_is_beta_g_r_minus_one_minus_beta_g_f(mlp_setup):
  model, params, state, x, y = mlp_setup
  remain = {"image": x[:5], "label": y[:5]}
  forget = {"image": x[5:], "label": y[5:]}
  beta = 0.8
  g = jax.grad(lambda p: procedures.NegGradPlusLoss()(model, p, state, remain, forget, None,
                                                  beta)[0])(params)

  def ce_grad(b):
    return jax.grad(lambda p: steps.cross_entropy(model.apply({"params": p}, b["image"]),
                                                     b["label"]))(params)

  g_r, g_f = ce_grad(remain), ce_grad(forget)
  chex.assert_trees_all_close(g, jax.tree.map(lambda r, f: beta * r - (1 - beta) * f, g_r, g_f),
                              rtol=1e-5, atol=1e-7)


# --- random labels ----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 10])
def test_random_labels_never_equal_the_true_label_and_cover_the_others(k):
  labels = np.arange(5000) % k
  wrong = runner_lib.random_wrong_labels(labels, k, [0, 1])
  assert not np.any(wrong == labels)
  assert wrong.min() >= 0 and wrong.max() < k
  for c in range(k):   # every wrong class is drawn, roughly uniformly
    counts = np.bincount(wrong[labels == c], minlength=k)
    assert counts[c] == 0 and np.all(counts[np.arange(k) != c] > 0.6 * 5000 / k / (k - 1))
  again = runner_lib.random_wrong_labels(labels, k, [0, 1])
  np.testing.assert_array_equal(wrong, again)   # seeded


def test_a_random_label_stage_relabels_only_the_forget_examples():
  model = TinyMLP(num_classes=4)
  images, labels = _digits_like()
  params, state = init_with_stats(model, jnp.asarray(images[:4], jnp.float32))
  proc = Procedure((Stage(procedures.CrossEntropy(), "forget", 8, random_labels=True),), 0.1)
  forget = np.arange(0, 40, 5)
  runner = runner_lib.Runner(model, proc, jnp.asarray(images), jnp.asarray(labels),
                             {"remain": None, "forget": forget}, num_classes=4, mean=0.0,
                             std=1.0, seed=3)
  relabelled = np.asarray(next(runner.inputs(1)).labels)
  assert np.all(relabelled[forget] != labels[forget])
  np.testing.assert_array_equal(np.delete(relabelled, forget), np.delete(labels, forget))
  assert not np.array_equal(np.asarray(next(runner.inputs(2)).labels), relabelled)   # redrawn


# --- the SVC membership-inference attack ------------------------------------------------------

def test_svc_mia_efficacy_on_separable_confidences():
  rng = np.random.default_rng(0)
  members = rng.uniform(0.9, 1.0, 400)       # remain-train: confident
  nonmembers = rng.uniform(0.2, 0.6, 400)    # test: unsure
  like_test = rng.uniform(0.25, 0.55, 100)
  like_train = rng.uniform(0.92, 0.99, 100)
  assert readouts.svc_mia_efficacy(members, nonmembers, like_test) >= 0.98
  assert readouts.svc_mia_efficacy(members, nonmembers, like_train) <= 0.02
  mixed = np.concatenate([like_test[:50], like_train[:50]])
  assert readouts.svc_mia_efficacy(members, nonmembers, mixed) == pytest.approx(0.5, abs=0.03)
  with pytest.raises(ValueError, match="at least 10 members"):
    readouts.svc_mia_efficacy(members[:5], nonmembers, like_test)


def test_protocol_readouts_from_a_record():
  rec = {"forget_train_accuracy": 0.25, "remain_train_accuracy": 0.9, "test_accuracy": 0.8,
         "remain_test_accuracy": 0.85, "mia_efficacy": 0.7}
  got = readouts.protocol_readouts(rec, setting="class")
  assert got == {"UA": 0.75, "RA": 0.9, "TA": 0.85, "MIA": 0.7}
  assert readouts.protocol_readouts(rec, setting="random")["TA"] == 0.8


def test_run_time_counts_the_unlearning_itself_not_its_evaluation():
  from fmjax.unlearning import run_time
  records = [{"phase": "original", "seconds": {"evaluate": 5.0}},
             {"phase": "edit", "seconds": {"score": 2.0, "mask": 0.5, "evaluate": 3.0}},
             {"phase": "finetune", "seconds": {"finetune": 4.0, "evaluate": 3.0}},
             {"phase": "finetune", "seconds": {"finetune": 4.5, "evaluate": 3.0}},
             {"phase": "relearn", "seconds": {"relearn": 9.0}}]
  assert run_time(records) == 11.0
