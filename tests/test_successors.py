"""The paper's successors: each method's rule against a hand computation on tiny models."""

from __future__ import annotations

import chex
import flax.linen as flax_nn
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


# --- each method as users call it: the wiring (planted bugs each of these catches) ------------

def _task(images, labels, forget, num_classes=4, remain=None, **kw):
  from fmjax.task import UnlearnTask
  remain = np.setdiff1d(np.arange(len(labels)), forget) if remain is None else remain
  return UnlearnTask(images, labels, forget, remain, images[:8], labels[:8], num_classes,
                     0.0, 1.0, **kw)


def _per_example_mean_grad(model, params, state, images, labels):
  """The mean over examples of d CE / d theta, one example at a time (inference mode)."""
  total = None
  for x, y in zip(images, labels, strict=True):
    g = jax.grad(lambda p, x=x, y=y: steps.cross_entropy(
        model.apply({"params": p, **state}, jnp.asarray(x[None], jnp.float32), train=False),
        jnp.asarray([y])))(params)
    total = g if total is None else jax.tree.map(jnp.add, total, g)
  return jax.tree.map(lambda t: np.asarray(t) / len(labels), total)


def test_salun_as_called_freezes_every_weight_but_the_top_half_of_the_forget_gradient():
  """``SalUn().edit``: saliency from the FORGET loss at the original weights; the salient
  half trains, the other half is frozen (planted: freeze = salient; remain loss)."""
  model = TinyCNN()
  images, labels = _digits_like()
  params, state = init_with_stats(model, jnp.asarray(images[:8], jnp.float32) / 255)
  forget = np.arange(1, 40, 4)   # 10 examples, score batches of 3: a ragged last batch
  task = _task(images, labels, forget)
  edit = SalUn(score_batch_size=3).edit(model, params, state, task, jax.random.key(0))
  chex.assert_trees_all_equal(edit.params, params)        # nothing moves before training
  g = _per_example_mean_grad(model, params, state, images[forget] / np.float32(255),
                             labels[forget])
  mags = np.concatenate([np.abs(x).ravel() for x in jax.tree.leaves(g)])
  threshold = np.sort(mags)[::-1][round(0.5 * mags.size) - 1]   # the smallest salient one
  for f, m in zip(jax.tree.leaves(edit.freeze), jax.tree.leaves(g), strict=True):
    f, m = np.asarray(f), np.abs(m)
    clear = np.abs(m - threshold) > 1e-4 * threshold       # not at the threshold itself
    np.testing.assert_array_equal(f[clear], (m < threshold)[clear])
  assert edit.info["salient_fraction"] == pytest.approx(0.5, abs=1 / mags.size)


@pytest.mark.parametrize("t, kl_weight, ce_weight", [(3.0, 0.3, 0.6), (0.5, 2.0, 0.1)])
def test_scrub_objectives_as_configured_equal_their_formulas(mlp_setup, t, kl_weight,
                                                             ce_weight):
  """The stages of ``SCRUB(...).procedure``: max-step ``-T^2 KL_T`` on D_f, min-step
  ``gamma CE + alpha T^2 KL_T`` on D_r, at the configured T and weights (planted: the
  min-step at T = 1; alpha and gamma swapped)."""
  model, teacher, state, x, y = mlp_setup
  student = jax.tree.map(lambda p: p + 0.2 * jnp.sign(p), teacher)
  proc = SCRUB(temperature=t, kl_weight=kl_weight, ce_weight=ce_weight,
               forget_batch_size=5).procedure(None, procedures.Budget(3, 5e-4, 7))
  (mx, mn) = proc.stages
  assert (mx.stream, mx.batch_size, mn.stream, mn.batch_size) == ("forget", 5, "remain", 7)
  s = np.asarray(model.apply({"params": student}, x), np.float64)
  z = np.asarray(model.apply({"params": teacher}, x), np.float64)

  def log_softmax(a):
    a = a - a.max(-1, keepdims=True)
    return a - np.log(np.exp(a).sum(-1, keepdims=True))

  lt, ls = log_softmax(z / t), log_softmax(s / t)
  kl = t**2 * np.mean(np.sum(np.exp(lt) * (lt - ls), -1))
  ce = -np.mean(log_softmax(s)[np.arange(len(y)), np.asarray(y)])
  batch = {"image": x, "label": y}
  got_max = mx.objective(model, student, state, batch, None, (teacher, state), 0.0)[0]
  got_min = mn.objective(model, student, state, batch, None, (teacher, state), 0.0)[0]
  assert float(got_max) == pytest.approx(-kl, rel=1e-5)
  assert float(got_min) == pytest.approx(ce_weight * ce + kl_weight * kl, rel=1e-5)


@pytest.mark.parametrize("max_epochs, epochs", [(2, 3), (1, 3), (3, 3), (5, 2), (0, 3)])
def test_scrub_max_steps_run_in_exactly_the_first_max_epochs(max_epochs, epochs):
  proc = SCRUB(max_epochs=max_epochs).procedure(None, procedures.Budget(epochs, 5e-4, 8))
  mx, mn = proc.stages
  assert [e for e in range(1, epochs + 3) if mx.runs_in(e)] == list(
      range(1, min(max_epochs, epochs) + 1))
  assert all(mn.runs_in(e) for e in range(1, epochs + 1))


def test_scrub_runner_takes_max_steps_only_in_the_first_epochs():
  """The runner's steps per epoch: forget batches only in the max-step epochs."""
  model = TinyMLP(num_classes=4)
  images, labels = _digits_like()
  proc = SCRUB(max_epochs=1, forget_batch_size=4).procedure(None,
                                                            procedures.Budget(3, 5e-4, 10))
  forget = np.arange(0, 40, 5)                    # 8: 2 max-steps of 4
  params, state = init_with_stats(model, jnp.asarray(images[:4], jnp.float32))
  runner = runner_lib.Runner(model, proc, jnp.asarray(images), jnp.asarray(labels),
                             {"remain": np.setdiff1d(np.arange(40), forget), "forget": forget},
                             num_classes=4, mean=0.0, std=1.0, seed=0,
                             teacher=(params, state))
  stages = [[x.stage for x in runner.inputs(e)] for e in (1, 2, 3)]
  assert stages == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]


def test_neggrad_plus_cycles_its_forget_stream_through_every_forget_example():
  """Every remain step takes the NEXT forget batch of an epoch's permutation of D_f, cycled
  (planted: the first forget batch every step)."""
  from fmjax.methods import NegGradPlus
  model = TinyMLP(num_classes=4)
  images, labels = _digits_like()
  forget = np.arange(0, 40, 6)                    # 7 forget examples, batches of 3
  remain = np.setdiff1d(np.arange(40), forget)    # 33 remain examples, batches of 8: 5 steps
  proc = NegGradPlus(forget_batch_size=3).procedure(None, procedures.Budget(1, 0.01, 8))
  runner = runner_lib.Runner(model, proc, jnp.asarray(images), jnp.asarray(labels),
                             {"remain": remain, "forget": forget}, num_classes=4, mean=0.0,
                             std=1.0, seed=0)
  for epoch in (1, 2):
    pairs = np.concatenate([x.pair_idx for x in runner.inputs(epoch)])
    assert len(pairs) == 15
    assert sorted(pairs[:7]) == list(forget)     # one pass over D_f ...
    np.testing.assert_array_equal(pairs[7:14], pairs[:7])   # ... then the same order again
    np.testing.assert_array_equal(pairs[14:], pairs[:1])


def test_ssd_fisher_importance_compares_the_forget_set_with_the_remain_set(cnn_setup):
  """``SSD(importance='fisher').edit`` dampens with ``F_f`` against ``F_r`` (the remain
  data, not D = D_r + D_f; planted: the mixture), each the float64 per-example loop."""
  from fmjax.methods import SSD
  from tests.conftest import loop_fisher
  model = TinyCNN()
  images, labels = _digits_like(n=24)
  params, state = init_with_stats(model, jnp.asarray(images[:8], jnp.float32) / 255)
  forget = np.arange(0, 24, 4)
  task = _task(images, labels, forget)
  settings = SSD(importance="fisher", alpha=2.0, dampening=1.0, fisher_chunk=5,
                 score_batch_size=7)
  edit = settings.edit(model, params, state, task, jax.random.key(0))
  x = images / np.float32(255)   # the task's inputs: x / 255 (mean 0, std 1)
  f_f = loop_fisher(model, params, state, x[forget], labels[forget])
  f_r = loop_fisher(model, params, state, x[task.remain], labels[task.remain])
  want, selected = ssd_dampen(params, f_f, f_r, alpha=2.0, lam=1.0)
  n_sel = sum(int(s.sum()) for s in jax.tree.leaves(selected))
  n_all = sum(s.size for s in jax.tree.leaves(selected))
  assert 0 < n_sel < n_all                          # the rule selects some, not all
  assert edit.info["selected_fraction"] == pytest.approx(n_sel / n_all)
  chex.assert_trees_all_close(edit.params, want, rtol=1e-4, atol=1e-7)


class _Readout(flax_nn.Module):
  """Logit c = 12 x_c: an image's channel c (x / 255) sets the model's confidence in class c."""

  @flax_nn.compact
  def __call__(self, x, train: bool = False):
    scale = self.param("scale", flax_nn.initializers.ones, ())
    return 12.0 * scale * x.reshape(x.shape[0], -1)


def _confidence_images(labels, pixels, rng):
  """uint8 [N, 1, 1, 3]: the label's channel drawn from ``pixels`` (lo, hi), the others 0;
  p_y = e^L / (e^L + 2) at L = 12 x / 255: (0, 10) ~0.35, (33, 43) ~0.75, (70, 85) ~0.95."""
  x = np.zeros((len(labels), 1, 1, 3), np.uint8)
  x[np.arange(len(labels)), 0, 0, labels] = rng.integers(*pixels, len(labels))
  return x


@pytest.mark.parametrize("setting", ["random", "class"])
def test_the_evaluators_mia_efficacy_attacks_the_forget_set_with_the_kept_classes_test_set(
    setting):
  """``Evaluator(...)['mia_efficacy']`` on a hand-built model whose confidences are set per
  example: members = the remain set, non-members = the test examples of the KEPT classes,
  target = D_f (planted: target = the remain set; non-members with the removed class)."""
  from fmjax.readouts import Evaluator, _confidence
  from fmjax.task import UnlearnTask
  rng = np.random.default_rng(0)
  n = 120
  labels = np.arange(n) % 3
  sure, unsure, between = (70, 85), (0, 10), (33, 43)
  if setting == "random":   # D_f as unsure as the test set: efficacy ~1
    forget = np.arange(0, n, 6)
    remain = np.setdiff1d(np.arange(n), forget)
    images = _confidence_images(labels, sure, rng)
    images[forget] = _confidence_images(labels[forget], unsure, rng)
    test_labels = np.arange(n) % 3
    test_images = _confidence_images(test_labels, unsure, rng)
    classes = None
  else:   # class 0 removed, D_f between members and the test set, nearer the members:
    # efficacy ~0; the removed class's test examples look like D_f, so counting them as
    # non-members would call D_f non-members (efficacy ~1).
    forget, remain = np.flatnonzero(labels == 0), np.flatnonzero(labels != 0)
    images = _confidence_images(labels, sure, rng)
    images[forget] = _confidence_images(labels[forget], between, rng)
    test_labels = np.arange(2 * n) % 3
    test_images = _confidence_images(test_labels, unsure, rng)
    removed = test_labels == 0
    test_images[removed] = _confidence_images(test_labels[removed], between, rng)
    classes = (0,)
  task = UnlearnTask(images, labels, forget, remain, test_images, test_labels, 3,
                     np.zeros(3, np.float32), np.ones(3, np.float32), classes)
  model = _Readout()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 1, 1, 3)))
  got = Evaluator(model, task, remain, eval_limit=None, seed=3)(variables["params"], {})
  logits = lambda x: 12.0 * x.reshape(len(x), -1).astype(np.float64) / 255   # noqa: E731
  kept = ~np.isin(test_labels, classes or ())
  want = readouts.svc_mia_efficacy(
      _confidence(logits(images[remain]), labels[remain]),
      _confidence(logits(test_images[kept]), test_labels[kept]),
      _confidence(logits(images[forget]), labels[forget]), seed=3)
  assert got["mia_efficacy"] == pytest.approx(want, abs=1e-9)
  if setting == "random":
    assert want >= 0.95
  else:
    assert want <= 0.05


def test_each_successor_defaults_to_its_authors_recipe():
  """The defaults the docstrings cite (a survivor of make mutants: SSD's alpha changed)."""
  from fmjax.methods import SSD, NegGradPlus, RandomLabel, registry
  assert (SSD().alpha, SSD().dampening, SSD().importance, SSD().epochs) == (10.0, 1.0,
                                                                           "batch", 0)
  assert (SalUn().fraction, SalUn().lr, SalUn().epochs) == (0.5, 0.013, 10)
  s = SCRUB()
  assert (s.temperature, s.kl_weight, s.ce_weight, s.max_epochs, s.epochs, s.lr) == (
      4.0, 0.001, 0.99, 2, 3, 5e-4)
  assert (NegGradPlus().beta, NegGradPlus().forget_batch_size) == (0.99, 128)
  assert {"ssd", "salun", "scrub", "neggrad_plus", "l1_sparse", "random_label"} <= set(
      registry())
  assert RandomLabel().name == "random_label"
