"""Tiny models and brute-force references shared by the tests."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fmjax import xla_flags

xla_flags.configure()   # the suite runs as the entry points do (before any backend starts)


class TinyMLP(nn.Module):
  """Dense-tanh-Dense: every parameter in a Dense layer."""
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], -1)
    x = jnp.tanh(nn.Dense(5)(x))
    return nn.Dense(self.num_classes)(x)


class TinyCNN(nn.Module):
  """Conv (SAME, bias) - BN - relu - strided Conv (VALID, no bias) - BN - Dense.

  Covers the per-layer formulas: conv with and without bias, stride 2, both
  paddings, a non-square kernel, BatchNorm scale and shift, Dense.
  """
  num_classes: int = 4

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(3, (3, 3), padding="SAME")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.Conv(4, (3, 2), strides=2, padding="VALID", use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = jnp.tanh(x).mean(axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class SharedDense(nn.Module):
  """Calls one Dense layer twice: per-layer formulas do not apply."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    layer = nn.Dense(x.shape[-1])
    return nn.Dense(3)(layer(jnp.tanh(layer(x))))


class CustomParam(nn.Module):
  """Holds a parameter outside Conv/Dense/BatchNorm."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    temperature = self.param("temperature", nn.initializers.ones, ())
    return nn.Dense(3)(x) / temperature


def init_with_stats(model, x, key=0):
  """Initialises ``model``; perturbs BatchNorm statistics away from (0, 1)."""
  variables = dict(model.init(jax.random.key(key), x))
  params = variables.pop("params")
  if "batch_stats" in variables:
    k1, k2 = jax.random.split(jax.random.key(key + 100))
    stats = variables["batch_stats"]
    leaves, treedef = jax.tree_util.tree_flatten(stats)
    keys = jax.random.split(k1, len(leaves))
    leaves = [leaf + 0.5 * jax.random.uniform(k, leaf.shape)
              for k, leaf in zip(keys, leaves, strict=True)]
    variables["batch_stats"] = jax.tree_util.tree_unflatten(treedef, leaves)
    # BatchNorm scales away from 1 so that their gradients matter.
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: v * (1.0 + jax.random.uniform(k2, v.shape))
        if "scale" in jax.tree_util.keystr(p) else v, params)
  return params, variables


def loop_fisher(model, params, state, images, labels, *, kind="empirical"):
  """Brute force: an explicit Python loop over examples, batch of one, float64.

  Returns the MEAN over examples of the squared gradient of log p(y|x) (for
  kind='true', of sum_c p(c|x) (d log p(c|x))^2).
  """
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
    s64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), state)
    x64 = np.asarray(images, np.float64)

    def log_probs(p, x):
      logits = model.apply({"params": p, **s64}, x[None], train=False)[0]
      return jax.nn.log_softmax(logits)

    def square_add(total, grads, weight=1.0):
      return jax.tree.map(lambda t, g: t + weight * g ** 2, total, grads)

    total = jax.tree.map(jnp.zeros_like, p64)
    for n in range(x64.shape[0]):
      x = jnp.asarray(x64[n])
      log_p = lambda p, x=x: log_probs(p, x)
      if kind == "empirical":
        total = square_add(total, jax.grad(lambda p, lp=log_p, y=int(labels[n]): lp(p)[y])(p64))
      else:
        probs = np.exp(np.asarray(log_p(p64)))
        for c in range(probs.shape[0]):
          total = square_add(total, jax.grad(lambda p, lp=log_p, c=c: lp(p)[c])(p64), probs[c])
    return jax.tree.map(lambda t: np.asarray(t) / x64.shape[0], total)


def rel_error(a, b):
  """||a - b|| / ||b|| over all leaves of two pytrees."""
  la = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(a)]
  lb = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(b)]
  num = sum(float(np.sum((x - y) ** 2)) for x, y in zip(la, lb, strict=True))
  den = sum(float(np.sum(y ** 2)) for y in lb)
  return (num / den) ** 0.5


@pytest.fixture
def cnn_setup():
  model = TinyCNN()
  x = jax.random.normal(jax.random.key(1), (7, 6, 6, 2))
  y = jax.random.randint(jax.random.key(2), (7,), 0, 4)
  params, state = init_with_stats(model, x)
  return model, params, state, x, y


@pytest.fixture
def mlp_setup():
  model = TinyMLP()
  x = jax.random.normal(jax.random.key(3), (9, 4))
  y = jax.random.randint(jax.random.key(4), (9,), 0, 3)
  params, state = init_with_stats(model, x)
  return model, params, state, x, y


@pytest.fixture(scope="module")
def digits():
  """scikit-learn's 8x8 digits as an fmjax dataset (real data, no download)."""
  from fmjax import data
  return data.load_dataset("digits")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
  """A small CNN trained on digits with the paper's MNIST settings (constant lr 0.01,
  batch 128), 3 epochs instead of 30 (about 5 s); its work directory."""
  from fmjax import training
  workdir = tmp_path_factory.mktemp("digits") / "train"
  training.train(training.default_config("digits", "small_cnn", epochs=3), workdir,
                 dataset=digits, progress=False)
  return str(workdir)
