"""One optimiser step: the state it reads and writes, the one SGD, the batch it sees.

Every run of fmjax (the original's training, the paper's fine-tuning,
Retrain, a successor's procedure, the relearn readout) takes its steps
through :func:`optimizer_step` with the optimiser :func:`sgd`, on batches
gathered on the device by :func:`gather_batch`; :mod:`fmjax.runner` loops
them over epochs.

The SGD is PyTorch's: weight decay added to the gradient before momentum,
then ``-lr``. The learning rate is a plain or traced NUMBER, evaluated per
step by the caller (:class:`fmjax.runner.Runner` evaluates schedules on the
host), so one compiled step serves every schedule; the state's structure
depends on neither the rate nor the frozen set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fmjax import sharding
from fmjax.data.preprocess import augment as augment_images
from fmjax.data.preprocess import normalize


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


def sgd(learning_rate: Any = 1.0, *, momentum: float, weight_decay: float,
        freeze: Any = None) -> optax.GradientTransformation:
  """SGD + momentum with coupled weight decay (PyTorch's ``SGD(weight_decay=...)``).

  Args:
    learning_rate: a number, plain or traced (a schedule is evaluated by the
      caller at each step; :class:`fmjax.runner.Runner` does).
    momentum: the momentum coefficient (0 = none).
    weight_decay: the L2 coefficient added to the gradient.
    freeze: a boolean pytree shaped like the params (True = must not move),
      or None. Frozen entries have their gradient plus weight decay zeroed
      before momentum sees it (so their momentum stays exactly zero) and their
      update zeroed after, so they stay EXACTLY where they are.

  The state holds momentum only; its structure depends on neither
  ``learning_rate`` nor ``freeze``.
  """
  return optax.chain(optax.add_decayed_weights(weight_decay), _zero_where(freeze),
                     optax.trace(decay=momentum), optax.scale(-learning_rate),
                     _zero_where(freeze))


def _zero_where(mask: Any) -> optax.GradientTransformation:
  """Stateless: updates of the entries where ``mask`` is True become exactly 0."""
  def update(updates, state, params=None):
    del params
    if mask is None:
      return updates, state
    return jax.tree.map(lambda m, u: jnp.where(m, jnp.zeros_like(u), u), mask, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def cross_entropy(logits: jax.Array, labels: jax.Array, weight: jax.Array | None = None
                  ) -> jax.Array:
  """Mean softmax cross-entropy. Shapes: logits [B, K], labels [B] -> [].

  ``weight`` [B] (0 = a padding example, :mod:`fmjax.sharding`) makes it the
  weighted mean ``sum(w * ce) / sum(w)``.
  """
  return sharding.weighted_mean(optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels), weight)


def init_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                     key: jax.Array, input_shape: tuple[int, ...]) -> TrainState:
  """Initialises a model for inputs of ``input_shape`` ([B, H, W, C]) and its optimiser."""
  variables = dict(model.init(key, jnp.zeros(input_shape, jnp.float32)))
  params = variables.pop("params")
  return TrainState(params, variables, optimizer.init(params))


def optimizer_step(optimizer: optax.GradientTransformation, state: TrainState,
                   loss_fn: Callable[[Any], tuple[jax.Array, tuple[Any, jax.Array]]],
                   labels: jax.Array, weight: jax.Array | None = None
                   ) -> tuple[TrainState, dict]:
  """One optimiser step on ``loss_fn(params) -> (loss, (new_model_state, logits))``.

  Returns the new state and ``{'loss', 'accuracy'}``, the accuracy of
  ``logits`` against ``labels`` (over the examples of non-zero ``weight``
  when given).
  """
  (loss, (model_state, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  deltas, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, deltas)
  accuracy = sharding.weighted_mean(jnp.argmax(logits, -1) == labels, weight)
  return TrainState(params, model_state, opt_state), {"loss": loss, "accuracy": accuracy}


def apply_train(model: nn.Module, params: Any, model_state: Any, batch: dict
                ) -> tuple[jax.Array, Any]:
  """The model in training mode on ``batch``: its logits and the updated non-parameter
  collections (BatchNorm's statistics over the real examples of a padded batch)."""
  logits, updates = model.apply({"params": params, **model_state}, batch["image"],
                                train=sharding.bn_mode(batch), mutable=list(model_state))
  return logits, {**model_state, **updates}


def train_step(model: nn.Module, optimizer: optax.GradientTransformation, state: TrainState,
               batch: dict) -> tuple[TrainState, dict]:
  """One cross-entropy step in training mode (pure; jit it with the model and
  optimiser bound). A padded batch (with ``'weight'``) counts its real examples
  only, in the loss and in BatchNorm's statistics."""
  weight = sharding.example_weight(batch)

  def loss_fn(params):
    logits, model_state = apply_train(model, params, state.model_state, batch)
    return cross_entropy(logits, batch["label"], weight), (model_state, logits)

  return optimizer_step(optimizer, state, loss_fn, batch["label"], weight)


def gather_batch(images: jax.Array, labels: jax.Array, idx: Any, key: jax.Array, mean: Any,
                 std: Any, *, augment: bool, mesh: Any = None) -> dict:
  """On device: the examples ``idx`` of uint8 ``images``, augmented if asked, normalised.

  With a ``mesh`` the batch is then split across its devices, padded with
  zero-weight examples when ``b`` does not divide by the device count
  (:func:`fmjax.sharding.shard_examples`). The augmentation draws do not
  depend on the mesh.

  Shapes: images [N, H, W, C], labels [N], idx [b] -> ``{'image': [b, H, W, C] float32,
  'label': [b]}`` (``[b', ...]`` and ``'weight': [b']`` when padded).
  """
  x = images[idx]
  if augment:
    x = augment_images(key, x)
  return sharding.shard_examples({"image": normalize(x, mean, std), "label": labels[idx]},
                                 mesh)
