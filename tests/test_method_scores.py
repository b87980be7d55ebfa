"""Each method's score against brute force on tiny models."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fmjax import finetuning, masks, readouts, steps
from fmjax.methods import Influence, UnlearnTask, _channels
from fmjax.methods.fisher_noise import noise_variance
from fmjax.methods.influence import conjugate_gradient, influence_update
from fmjax.methods.tfidf import tfidf_scores
from fmjax.runner import Runner


class ConvBN(nn.Module):
  """conv(3ch, bias) - BN - relu - conv(4ch, no bias, no BN) - relu - mean - Dense."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(3, (3, 3), padding="SAME", name="c1")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, name="b1")(x))
    x = nn.relu(nn.Conv(4, (2, 2), padding="VALID", use_bias=False, name="c2")(x))
    return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))


@pytest.fixture
def convbn():
  model = ConvBN()
  x = jax.random.normal(jax.random.key(0), (5, 5, 5, 2))
  y = jnp.array([0, 1, 2, 1, 0])
  variables = dict(model.init(jax.random.key(1), x))
  stats = jax.tree.map(lambda s: s + 0.3, variables["batch_stats"])
  return model, {"params": variables["params"], "batch_stats": stats}, x, y


def test_channel_layers_link_each_conv_to_its_batchnorm(convbn):
  model, variables, x, _ = convbn
  layers = _channels.channel_layers(model, variables, x.shape[1:], {"train": False})
  assert [(layer.conv, layer.bn, layer.channels, layer.params_per_channel)
          for layer in layers] == [(("c1",), ("b1",), 3, 3 * 3 * 2 + 1),
                                   (("c2",), None, 4, 2 * 2 * 3)]


def test_channel_means_match_captured_intermediates(convbn):
  model, variables, x, _ = convbn
  _, inter = model.apply(variables, x, capture_intermediates=True)
  inter = inter["intermediates"]
  post = _channels.make_channel_means(model, {"train": False}, where="post")(variables, x)
  pre = _channels.make_channel_means(model, {"train": False}, where="pre")(variables, x)
  expected_post_c1 = jax.nn.relu(inter["b1"]["__call__"][0]).mean(axis=(1, 2))
  expected_pre_c1 = jax.nn.relu(inter["c1"]["__call__"][0]).mean(axis=(1, 2))
  expected_c2 = jax.nn.relu(inter["c2"]["__call__"][0]).mean(axis=(1, 2))  # no BN: conv out
  chex.assert_trees_all_close(post, {"c1": expected_post_c1, "c2": expected_c2}, rtol=1e-6)
  chex.assert_trees_all_close(pre, {"c1": expected_pre_c1, "c2": expected_c2}, rtol=1e-6)


def _ig_brute_force(model, variables, x, y, grid=4000):
  """IG of layer b1's output by an explicit head function and a fine midpoint sum."""
  _, inter = model.apply(variables, x, capture_intermediates=True)
  z = inter["intermediates"]["b1"]["__call__"][0]
  p = variables["params"]

  def head_loss(zz):
    h = jax.nn.relu(zz)
    h = jax.lax.conv_general_dilated(h, p["c2"]["kernel"], (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    logits = jax.nn.relu(h).mean(axis=(1, 2)) @ p["head"]["kernel"] + p["head"]["bias"]
    return -jnp.sum(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

  grad = jax.jit(jax.grad(head_loss))
  alphas = (np.arange(grid) + 0.5) / grid
  total = sum(grad(a * z) for a in alphas) / grid
  return (z * total).sum(axis=(1, 2)), head_loss(z) - head_loss(0 * z), head_loss


def test_integrated_gradients_match_a_fine_riemann_sum(convbn):
  model, variables, x, y = convbn
  layer = _channels.channel_layers(model, variables, x.shape[1:], {"train": False})[0]
  expected, completeness, _ = _ig_brute_force(model, variables, x, y)
  coarse = _channels.make_integrated_gradients(model, {"train": False}, (layer,), 400)
  got = coarse(variables, x, y)["/".join(layer.conv)]
  chex.assert_shape(got, (5, 3))
  np.testing.assert_allclose(got, expected, rtol=2e-2, atol=2e-3)
  # Completeness: the attributions of all channels add up to L(a) - L(0).
  np.testing.assert_allclose(float(got.sum()), float(completeness), rtol=2e-2)
  with pytest.raises(ValueError, match="steps must be >= 1"):
    _channels.make_integrated_gradients(model, {"train": False}, (layer,), 0)


def test_every_layers_integrated_gradients_come_from_one_program_and_equal_each_alone(convbn):
  model, variables, x, y = convbn
  layers = _channels.channel_layers(model, variables, x.shape[1:], {"train": False})
  assert len(layers) == 2
  together = _channels.make_integrated_gradients(model, {"train": False}, layers, 7)
  got = together(variables, x, y)
  for layer in layers:   # each layer's integral alone: only that layer is scaled
    alone = _channels.make_integrated_gradients(model, {"train": False}, (layer,), 7)
    np.testing.assert_allclose(got["/".join(layer.conv)],
                               alone(variables, x, y)["/".join(layer.conv)], rtol=1e-5,
                               atol=1e-7)
  assert together._cache_size() == 1   # one compiled program for both layers


class DeepConvBN(nn.Module):
  """``depth`` conv-BN-relu layers of 16 channels on 16x16 inputs, then a Dense head."""
  depth: int = 12

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i in range(self.depth):
      x = nn.Conv(16, (3, 3), padding="SAME", use_bias=False, name=f"c{i}")(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, name=f"b{i}")(x))
    return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))


def test_integrated_gradients_of_every_layer_need_one_pass_of_memory():
  """Twelve layers' integrated gradients in one program need about the temporaries of
  one layer's (one network copy, a loop over the layers), not twelve passes kept alive
  at once (GoogLeNet: 304 GB; make bench-memory). XLA's memory analysis, nothing run."""
  model = DeepConvBN()
  x = jnp.zeros((8, 16, 16, 3))
  variables = model.init(jax.random.key(0), x)
  layers = _channels.channel_layers(model, variables, x.shape[1:], {"train": False})
  assert len(layers) == 12

  def temp_bytes(chosen):
    ig = _channels.make_integrated_gradients(model, {"train": False}, chosen, 4)
    compiled = ig.lower(variables, x, jnp.zeros((8,), jnp.int32)).compile()
    return compiled.memory_analysis().temp_size_in_bytes
  assert temp_bytes(layers) < 2 * temp_bytes(layers[:1])


def test_channel_mask_counts_parameters_and_masks_whole_channels(convbn):
  model, variables, x, _ = convbn
  params = variables["params"]
  layers = _channels.channel_layers(model, variables, x.shape[1:], {"train": False})
  n = 19 * 3 + 12 * 4            # the conv kernels and biases: what channel masks can zero
  scores = {"c1": np.array([0.1, 5.0, 0.2]), "c2": np.array([3.0, 0.0, 4.0, -1.0])}
  # Target 25 params: channel c1/1 (19 params) then c2/2 (12) -> 31 >= 25, stop.
  mask, info = _channels.channel_mask(params, layers, scores, 25 / n)
  assert info == {"channels": 2, "target_params": 25, "masked_params": 31}
  expected_c1 = np.zeros((3, 3, 2, 3), bool)
  expected_c1[..., 1] = True
  np.testing.assert_array_equal(mask["c1"]["kernel"], expected_c1)
  np.testing.assert_array_equal(mask["c1"]["bias"], [False, True, False])
  np.testing.assert_array_equal(mask["c2"]["kernel"].any(axis=(0, 1, 2)),
                                [False, False, True, False])
  assert not mask["head"]["kernel"].any() and not mask["b1"]["scale"].any()
  with pytest.raises(ValueError, match="expected \\(3,\\)"):
    _channels.channel_mask(params, layers, {**scores, "c1": np.zeros(2)}, 0.1)
  with pytest.raises(ValueError, match="NaN"):
    _channels.channel_mask(params, layers, {**scores, "c1": np.array([0, np.nan, 0])}, 0.1)
  with pytest.raises(ValueError, match="ratio"):
    _channels.channel_mask(params, layers, scores, 1.5)


def test_tfidf_matches_a_hand_computed_table():
  # 3 channels x 3 classes of mean activations.
  a = np.array([[4.0, 0.0, 0.0],    # fires only for class 0
                [1.0, 1.0, 1.0],    # fires everywhere
                [1.0, 3.0, 2.0]])
  # TF = a / column sums (6, 4, 3); docs = #classes with a >= row mean: [1, 3, 2];
  # IDF = log(3 / (docs + 1)) = [log 1.5, log 0.75, log 1].
  tf0 = np.array([4 / 6, 1 / 6, 1 / 6])
  idf = np.log(np.array([3 / 2, 3 / 4, 3 / 3]))
  np.testing.assert_allclose(tfidf_scores(a, [0]), tf0 * idf)
  np.testing.assert_allclose(tfidf_scores(a, [0, 2]), (tf0 + a[:, 2] / 3) * idf)
  assert np.argmax(tfidf_scores(a, [0])) == 0


def test_fisher_noise_variance_follows_the_recipe():
  params = {"conv": {"kernel": jnp.ones((1, 1, 2, 3))}, "bn": {"scale": jnp.ones(3)},
            "fc": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)}}
  fisher = {"conv": {"kernel": jnp.array([[[[1.0, 1e-5, 4.0], [3.0, 1e-5, 4.0]]]])},
            "bn": {"scale": jnp.array([0.5, 1e-9, 2.0])},
            "fc": {"kernel": jnp.full((3, 4), 0.001), "bias": jnp.array([2.0, 1.0, 1.0, 1.0])}}
  alpha = 1e-6
  mu, var = noise_variance(fisher, params, ("fc",), alpha=alpha, forget_classes=(1,))
  inv = lambda h, cap: np.minimum(1 / (np.asarray(h) + 1e-8), cap)  # noqa: E731
  # Conv kernel: alpha * clamp(1/F, 1e3), averaged over the input-channel axis (-2).
  conv = alpha * inv(fisher["conv"]["kernel"], 1e3).mean(axis=-2, keepdims=True)
  np.testing.assert_allclose(var["conv"]["kernel"], np.broadcast_to(conv, (1, 1, 2, 3)),
                             rtol=1e-6)
  # 1-D parameter: x10.
  np.testing.assert_allclose(var["bn"]["scale"], 10 * alpha * inv([0.5, 1e-9, 2.0], 1e3),
                             rtol=1e-6)
  # Classifier: clamp at 1e2, x10; the forgotten class gets mean 0, variance 1e-4 x10.
  fc = 10 * alpha * np.broadcast_to(inv(np.full((3, 4), 0.001), 1e2).mean(0), (3, 4)).copy()
  fc[:, 1] = 1e-3
  np.testing.assert_allclose(var["fc"]["kernel"], fc, rtol=1e-6)
  bias = 10 * alpha * inv([2.0, 1.0, 1.0, 1.0], 1e2)
  bias[1] = 1e-3
  np.testing.assert_allclose(var["fc"]["bias"], bias, rtol=1e-6)
  assert float(mu["fc"]["kernel"][:, 1].sum()) == 0 and float(mu["fc"]["bias"][1]) == 0
  np.testing.assert_array_equal(mu["conv"]["kernel"], params["conv"]["kernel"])


class Logistic(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(3, name="fc")(x.reshape(x.shape[0], -1))


def _logistic_task(n=60, f=4):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 1, 1, f)).astype(np.float32)
  y = rng.integers(0, 3, n)
  # uint8 images with mean 0 / std 1/255 make normalize(x) an exact identity map of x*255/255.
  images = ((x - x.min()) / (x.max() - x.min()) * 255).round().astype(np.uint8)
  mean, std = np.zeros(f, np.float32), np.ones(f, np.float32)
  forget = np.arange(0, n, 6)
  remain = np.setdiff1d(np.arange(n), forget)
  task = UnlearnTask(images, y, forget, remain, images[:5], y[:5], 3, mean, std, None, y[forget])
  return task


def test_influence_equals_the_exact_newton_step_on_logistic_regression():
  task = _logistic_task()
  model = Logistic()
  xs = np.asarray(next(task.batches(np.arange(len(task.labels)), 1000))["image"], np.float64)
  ys = task.labels
  lam = 0.05
  with jax.enable_x64(True):
    p0 = model.init(jax.random.key(0), jnp.asarray(xs[:1]))["params"]
    p0 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), p0)
    flat0, unravel = jax.flatten_util.ravel_pytree(p0)

    def mean_loss(w, idx, l2):
      logits = model.apply({"params": unravel(w)}, jnp.asarray(xs[idx]))
      nll = -jax.nn.log_softmax(logits)[jnp.arange(len(idx)), ys[idx]]
      return nll.mean() + 0.5 * l2 * jnp.sum(w ** 2)

    everything = np.arange(len(ys))
    w = flat0
    for _ in range(30):   # w*: Newton's method to the exact optimum of the full objective
      w = w - jnp.linalg.solve(jax.hessian(mean_loss)(w, everything, lam),
                               jax.grad(mean_loss)(w, everything, lam))
    assert float(jnp.linalg.norm(jax.grad(mean_loss)(w, everything, lam))) < 1e-10
    # One exact Newton step on the remain objective, whose L2 per remain example is
    # lam * |D| / |D_r| (the same total regulariser).
    lam_r = lam * len(ys) / len(task.remain)
    newton = w - jnp.linalg.solve(jax.hessian(mean_loss)(w, task.remain, lam_r),
                                  jax.grad(mean_loss)(w, task.remain, lam_r))
    expected = unravel(newton - w)
    params32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), unravel(w))
  settings = Influence(hessian="remain", damping=lam_r,
                      cg_iters=50, hessian_examples=10_000, score_batch_size=16)
  delta, info = influence_update(model, params32, {}, task, settings, seed=0)
  assert info["cg_residual"] < 1e-4
  chex.assert_trees_all_close(delta, jax.tree.map(np.float32, expected), rtol=2e-3,
                              atol=2e-5)


def test_conjugate_gradient_solves_a_spd_system():
  a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
  b = {"x": jnp.array([1.0, 2.0])}
  x, res, its = conjugate_gradient(lambda v: {"x": a @ v["x"]}, b, iters=10)
  np.testing.assert_allclose(x["x"], np.linalg.solve(a, b["x"]), rtol=1e-5)
  assert res < 1e-5 and its == 2
  # Negative curvature: stop there and keep the best iterate (here: none better than 0).
  indefinite = jnp.array([[1.0, 0.0], [0.0, -1.0]])
  x, res, its = conjugate_gradient(lambda v: {"x": indefinite @ v["x"]},
                                   {"x": jnp.array([0.0, 1.0])}, iters=10)
  assert its == 0 and res == 1.0 and float(jnp.abs(x["x"]).max()) == 0.0


@pytest.mark.parametrize("freeze", [True, False])
def test_fine_tuning_keeps_masked_weights_at_zero_only_when_frozen(convbn, freeze):
  model, variables, _, _ = convbn
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 5, 5, 2), dtype=np.uint8)
  labels = rng.integers(0, 3, 40).astype(np.int32)
  params = variables["params"]
  mask = masks.random_mask(jax.random.key(3), params, 0.3)
  masked = masks.apply_mask(params, mask)
  proc = finetuning.finetune_procedure(0.1, batch_size=16, momentum=0.9, weight_decay=1e-3)
  ft = Runner(model, proc, jnp.asarray(images), jnp.asarray(labels), {"remain": np.arange(40)},
              mean=np.zeros(2), std=np.ones(2), seed=0, freeze=mask if freeze else None)
  state = ft.init(masked, {"batch_stats": variables["batch_stats"]})
  for epoch in (1, 2, 3):
    state, _ = ft.epoch(state, epoch)
  size = ft.step_fns[0]._cache_size()
  for epoch in (4, 5):
    state, _ = ft.epoch(state, epoch)
  assert ft.step_fns[0]._cache_size() == size       # no retrace after the first epoch
  moved = [np.abs(np.asarray(p)[np.asarray(m)]).max(initial=0.0)
           for p, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(mask), strict=True)]
  if freeze:
    assert max(moved) == 0.0
  else:
    assert max(moved) > 0.0
  unmasked_changed = any(
      not np.array_equal(np.asarray(a)[~np.asarray(m)], np.asarray(b)[~np.asarray(m)])
      for a, b, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(masked),
                         jax.tree.leaves(mask), strict=True))
  assert unmasked_changed


def test_volatility_literal_absolute_and_adverse():
  remain = [0.5, 0.9, 0.7, 0.8]
  v = readouts.volatility(remain, kind="remain")
  assert v["signed"] == pytest.approx((0.8 - 0.5) / 3)
  assert v["abs"] == pytest.approx((0.4 + 0.2 + 0.1) / 3)
  assert v["adverse"] == pytest.approx(0.2 / 3)
  forget = [0.0, 0.3, 0.1]
  v = readouts.volatility(forget, kind="forget")
  assert v["signed"] == pytest.approx(-0.1 / 2)
  assert v["adverse"] == pytest.approx(0.3 / 2)
  assert readouts.volatility([0.3], kind="forget")["abs"] is None
  with pytest.raises(ValueError, match="'remain' or 'forget'"):
    readouts.volatility(remain, kind="test")


def test_membership_inference_separates_confident_members():
  rng = np.random.default_rng(0)
  k = 5
  def logits(confident, n):   # noqa: E306
    out = rng.normal(size=(n, k))
    out[:, 0] += 6.0 if confident else 0.5
    return out
  labels = np.zeros(400, int)
  members = readouts.mia_features(logits(True, 400), labels)
  nonmembers = readouts.mia_features(logits(False, 400), labels)
  chex.assert_shape(members, (400, 3))
  as_member = readouts.membership_inference(members, nonmembers,
                                            readouts.mia_features(logits(True, 100),
                                                                  labels[:100]))
  as_outsider = readouts.membership_inference(members, nonmembers,
                                              readouts.mia_features(logits(False, 100),
                                                                    labels[:100]))
  assert as_member["attack_accuracy"] > 0.9
  assert as_member["member_rate"] > 0.9 and as_outsider["member_rate"] < 0.2
  with pytest.raises(ValueError, match="at least 10"):
    readouts.membership_inference(members[:3], nonmembers, members)


def test_fine_tuning_step_equals_optax_sgd_with_the_schedule(convbn):
  """The runner's step with the rate evaluated on the host is optax's own stateful SGD
  over the schedule (weight decay, then momentum), step for step, in the (seed, epoch)
  order."""
  model, variables, _, _ = convbn
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (32, 5, 5, 2), dtype=np.uint8)
  labels = rng.integers(0, 3, 32).astype(np.int32)
  schedule = optax.piecewise_constant_schedule(0.1, {3: 0.1})
  proc = finetuning.finetune_procedure(schedule, batch_size=8, momentum=0.9, weight_decay=1e-3)
  ft = Runner(model, proc, jnp.asarray(images), jnp.asarray(labels), {"remain": np.arange(32)},
              mean=np.zeros(2), std=np.ones(2), seed=0)
  state = ft.init(variables["params"], {"batch_stats": variables["batch_stats"]})
  state, _ = ft.epoch(state, 1)
  state, _ = ft.epoch(state, 2)
  assert ft.last_lr(1) == pytest.approx(0.01) and ft.last_lr(2) == pytest.approx(0.01)
  opt = optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(schedule, momentum=0.9))
  ref = steps.TrainState(variables["params"], {"batch_stats": variables["batch_stats"]},
                         opt.init(variables["params"]))
  step = jax.jit(lambda s, b: steps.train_step(model, opt, s, b))
  for epoch in (1, 2):
    order = np.random.default_rng([0, epoch]).permutation(32)
    for i in range(4):
      idx = order[i * 8:(i + 1) * 8]
      ref, _ = step(ref, {"image": jnp.asarray(images[idx], jnp.float32) / 255.0,
                          "label": jnp.asarray(labels[idx])})
  chex.assert_trees_all_close(state.params, ref.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(state.model_state, ref.model_state, rtol=1e-5, atol=1e-6)


def test_relearn_counts_epochs_and_steps(monkeypatch):
  evaluated = iter([3.0, 1.0, 0.45])
  monkeypatch.setattr(readouts, "forget_loss", lambda *a: next(evaluated))
  per_epoch = {1: [2.0, 1.0, 0.9], 2: [0.7, 0.4, 0.3]}

  class State:
    params = model_state = None

  out = readouts.relearn_time(None, lambda s, e: (s, {"step_losses": per_epoch[e]}), State(),
                              threshold=0.5, max_epochs=5)
  assert out == {"epochs": 2, "steps": 4, "losses": [3.0, 1.0, 0.45], "threshold": 0.5}
  never = iter([3.0, 2.0])
  monkeypatch.setattr(readouts, "forget_loss", lambda *a: next(never))
  out = readouts.relearn_time(None, lambda s, e: (s, {"step_losses": [2.0]}), State(),
                              threshold=0.5, max_epochs=1)
  assert out["epochs"] is None and out["steps"] is None
  with pytest.raises(ValueError, match="positive loss"):
    readouts.relearn_time(None, None, State(), threshold=float("nan"), max_epochs=1)


def test_scoring_blocks_default_to_what_the_images_allow():
  """fisher_chunk and GradMask's score_batch_size: None is the data's block, 128 (256)
  examples up to 32x32 images, as many pixels for larger ones; make_config records it."""
  from fmjax.methods import FisherMask, FisherNoise, GradMask
  from fmjax.methods.base import examples_per_block
  from fmjax.unlearning import make_config
  assert [examples_per_block(128, s) for s in ((8, 8, 1), (28, 28, 1), (32, 32, 3),
                                               (64, 64, 3), (224, 224, 3))] == [
      128, 128, 128, 32, 2]
  assert FisherMask().fisher_block((64, 64, 3)) == 32 == FisherNoise().fisher_block((64, 64, 3))
  assert GradMask().score_block((64, 64, 3)) == 64 and GradMask().score_block((28, 28, 1)) == 256
  assert FisherMask(fisher_chunk=8).fisher_block((64, 64, 3)) == 8   # given: kept
  for dataset, chunk, batch in (("tiny_imagenet", 32, 64), ("cifar10", 128, 256),
                                ("mnist", 128, 256)):
    assert make_config("/nowhere", "fisher_mask", dataset=dataset).method.fisher_chunk == chunk
    assert make_config("/nowhere", "grad_mask",
                       dataset=dataset).method.score_batch_size == batch
  assert make_config("/nowhere", "ssd", dataset="tiny_imagenet",
                     fisher_chunk=16).method.fisher_chunk == 16
  # SSD and FisherNoise take fisher_chunk from a mixin that comes after Method in their
  # MRO: Method.for_data hands on to it.
  for name in ("ssd", "fisher_noise"):
    assert make_config("/nowhere", name, dataset="tiny_imagenet").method.fisher_chunk == 32
