"""Supervised training of the original model: one jitted SGD step.

The optimiser is the paper's: SGD with momentum 0.9 and weight decay added to
the gradient before momentum (PyTorch's ``SGD(weight_decay=...)``), driven by
an optax schedule (:mod:`fmjax.schedules`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
  """Everything one training step reads and writes (a pytree).

  Attributes:
    params: model parameters.
    model_state: non-parameter collections, e.g. ``{'batch_stats': ...}``.
    opt_state: the optax state.
  """
  params: Any
  model_state: Any
  opt_state: Any


def sgd(learning_rate: float | optax.Schedule, *, momentum: float = 0.9,
        weight_decay: float = 1e-4) -> optax.GradientTransformation:
  """SGD + momentum with coupled weight decay (PyTorch semantics)."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum=momentum))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy. Shapes: logits [B, K], labels [B] -> []."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels).mean()


def init_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                     key: jax.Array, input_shape: tuple[int, ...]) -> TrainState:
  """Initialises a model for inputs of ``input_shape`` ([B, H, W, C]) and its optimiser."""
  variables = dict(model.init(key, jnp.zeros(input_shape, jnp.float32)))
  params = variables.pop("params")
  return TrainState(params, variables, optimizer.init(params))


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation
                    ) -> Callable[[TrainState, Mapping], tuple[TrainState, dict]]:
  """Returns a jitted ``step(state, batch) -> (state, {'loss', 'accuracy'})``.

  BatchNorm runs in training mode and its running statistics are updated.
  ``batch`` is ``{'image': float [B, H, W, C], 'label': int [B]}``.
  """

  def step(state: TrainState, batch: Mapping) -> tuple[TrainState, dict]:
    def loss_fn(params):
      logits, updates = model.apply({"params": params, **state.model_state}, batch["image"],
                                    train=True, mutable=list(state.model_state))
      return cross_entropy(logits, batch["label"]), (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    deltas, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, deltas)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return TrainState(params, {**state.model_state, **updates}, opt_state), {
        "loss": loss, "accuracy": accuracy}

  return jax.jit(step)
