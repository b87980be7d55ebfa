"""ResNet20: parameter count, shapes, a training step."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax

from fmjax.models import resnet20
from fmjax.steps import init_train_state, sgd, train_step


def test_resnet20_parameter_count():
  # 269,722: the common PyTorch CIFAR ResNet20 with option-A shortcuts (convs
  # without bias, BatchNorm weight and bias, Dense 64 -> 10).
  variables = resnet20(10).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert sum(p.size for p in jax.tree.leaves(variables["params"])) == 269_722
  assert set(variables) == {"params", "batch_stats"}


def test_resnet20_shapes_any_channels_and_classes():
  model = resnet20(num_classes=7)
  x = jnp.ones((2, 28, 28, 1))
  variables = model.init(jax.random.key(0), x)
  chex.assert_shape(model.apply(variables, x), (2, 7))
  assert variables["params"]["conv_init"]["kernel"].shape == (3, 3, 1, 16)


def test_train_step_lowers_the_loss():
  model = resnet20(num_classes=3)
  tx = sgd(0.05, momentum=0.9, weight_decay=1e-4)
  state = init_train_state(model, tx, jax.random.key(0), (1, 8, 8, 3))
  x = jax.random.normal(jax.random.key(1), (12, 8, 8, 3))
  batch = {"image": x, "label": jnp.arange(12) % 3}
  step = jax.jit(lambda s, b: train_step(model, tx, s, b))
  first = None
  for _ in range(15):
    state, metrics = step(state, batch)
    first = first if first is not None else float(metrics["loss"])
  assert float(metrics["loss"]) < 0.5 * first
  # BatchNorm statistics moved away from their initial values.
  assert not jnp.allclose(state.model_state["batch_stats"]["bn_init"]["mean"], 0.0)
  assert isinstance(state.opt_state, tuple) and optax.tree_utils.tree_get(
      state.opt_state, "trace") is not None
