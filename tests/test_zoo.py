"""Every model of the registry: shapes, parameter counts, gradients, Fisher."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmjax
import fmjax.steps
from fmjax.models import MODELS, DenseNet, get_model
from tests.conftest import init_with_stats, rel_error

# Parameter counts for 10 classes and 3 input channels. References: ResNet20
# 269,722 (the PyTorch CIFAR ResNet20, option A); VGG16-BN 14,728,266, GoogLeNet
# 6,166,250 and DenseNet (growth 12) 1,000,618 are the counts of the widely
# used PyTorch CIFAR ports (kuangliu/pytorch-cifar) these models follow;
# ResNet-18 (CIFAR form) 11,173,962 is that port's ResNet18, the model of the
# unlearning protocol's tables (SalUn, l1-sparse); ResNet "50" (n=8) 755,802 =
# 6n+2 arithmetic below; SmallCNN at 28x28x1.
COUNTS = {"resnet18": 11_173_962, "resnet20": 269_722, "resnet50": 755_802, "vgg16": 14_728_266,
          "googlenet": 6_166_250, "densenet": 1_000_618}


def test_resnet50_count_from_its_definition():
  def block(cin, cout):
    return 9 * cin * cout + 9 * cout * cout + 4 * cout  # two convs, two BNs
  n, total, cin = 8, 9 * 3 * 16 + 2 * 16, 16
  for width in (16, 32, 64):
    for _ in range(n):
      total += block(cin, width)
      cin = width
  total += 64 * 10 + 10
  assert total == COUNTS["resnet50"]


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_count(name):
  variables = jax.eval_shape(get_model(name, 10).init, jax.random.key(0),
                             jnp.zeros((1, 32, 32, 3)))
  assert sum(p.size for p in jax.tree.leaves(variables["params"])) == COUNTS[name]


@pytest.mark.parametrize("name, c1, c2", [("small_cnn", 32, 64), ("tiny_cnn", 16, 32)])
def test_small_cnn_count(name, c1, c2):
  variables = jax.eval_shape(get_model(name, 10).init, jax.random.key(0),
                             jnp.zeros((1, 28, 28, 1)))
  conv = 9 * 1 * c1 + 2 * c1 + 9 * c1 * c2 + 2 * c2
  dense = 7 * 7 * c2 * 128 + 128 + 128 * 10 + 10
  assert sum(p.size for p in jax.tree.leaves(variables["params"])) == conv + dense


# DenseNet and GoogLeNet compile for 2-3 minutes each on 2 CPU cores (116 and
# 64 convolutions); `make test-slow` runs them, `make test-long` the other models and a
# shallow DenseNet, `make test` the small CNN.
SLOW = {"densenet", "googlenet"}


def _mark(name):
  if name in SLOW:
    return pytest.param(name, marks=pytest.mark.slow)
  return name if name in ("small_cnn", "tiny_cnn") else pytest.param(name,
                                                                      marks=pytest.mark.long)


@pytest.mark.parametrize("name", [_mark(n) for n in sorted(MODELS)])
def test_forward_backward_and_fisher(name):
  """On tiny 8x8x1 inputs (pooling stops at 1x1): shapes, finite grads, fisher_diag."""
  _check_model(get_model(name, 5))


@pytest.mark.long
def test_shallow_densenet_forward_backward_and_fisher():
  _check_model(DenseNet(num_classes=5, blocks=(2, 1, 1, 2)))


def _check_model(model):
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  y = jnp.array([0, 4])
  # BatchNorm statistics and scales away from (0, 1): their per-layer factors matter.
  params, state = init_with_stats(model, x)
  variables = {"params": params, **state}
  chex.assert_shape(model.apply(variables, x), (2, 5))

  def loss(p):
    logits, _ = model.apply({"params": p, **state}, x, train=True, mutable=["batch_stats"])
    return fmjax.steps.cross_entropy(logits, y)

  grads = jax.grad(loss)(params)
  chex.assert_trees_all_equal_shapes(grads, params)
  chex.assert_tree_all_finite(grads)
  batch = {"image": x, "label": y}
  fisher_diag = fmjax.make_fisher_diag(model, state)
  assert fisher_diag.describe(params, batch).path == "per_layer"
  f = fisher_diag(params, batch)
  chex.assert_trees_all_equal_shapes(f, params)
  # The exact per-layer formulas against the reference vmap(grad), leaf by leaf.
  reference = fmjax.make_fisher_diag(model, state, path="vmap")(params, batch)
  for (where, got), want in zip(jax.tree_util.tree_leaves_with_path(f),
                                jax.tree.leaves(reference), strict=True):
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(np.asarray(got) / scale, np.asarray(want) / scale, atol=2e-5,
                               err_msg=jax.tree_util.keystr(where))
  assert rel_error(f, reference) < 1e-5


def test_unknown_model():
  with pytest.raises(ValueError, match=r"unknown model 'resnet19'; valid names: \['densenet'"):
    get_model("resnet19", 10)
