"""Gradients of a batch's mean loss at fixed weights (inference mode), for scoring.

SSD's importance squares them per mini-batch; SalUn's saliency takes their
magnitude over the whole forget set. One compiled program per model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from fmjax import _compiled, sharding
from fmjax.steps import cross_entropy


def _compiled_batch_grad(model):
  def grad(params, model_state, images, labels, weight):
    def loss(p):
      logits = model.apply({"params": p, **model_state}, images, train=False)
      return cross_entropy(logits, labels, weight)
    return jax.grad(loss)(params)

  return _compiled.compiled(("batch_grad", model), lambda: jax.jit(grad))


def batch_mean_grads(model, params: Any, model_state: Any,
                     batches: Iterable[Mapping]) -> Iterable[tuple[Any, int]]:
  """``(gradient of the batch's mean cross-entropy, batch size)`` per batch.

  BatchNorm in inference mode (running statistics), as SSD and SalUn score.
  """
  grad = _compiled_batch_grad(model)
  for batch in batches:
    yield (grad(params, model_state, batch["image"], batch["label"],
                sharding.example_weight(batch)), sharding.real_size(batch))


def mean_loss_grad(model, params: Any, model_state: Any, batches: Iterable[Mapping]) -> Any:
  """The gradient of the mean loss over ALL examples of ``batches`` (exact:
  batch means weighted by their sizes)."""
  total, count = None, 0
  for g, n in batch_mean_grads(model, params, model_state, batches):
    scaled = jax.tree.map(lambda x, n=n: x * n, g)
    total = scaled if total is None else jax.tree.map(jnp.add, total, scaled)
    count += n
  return jax.tree.map(lambda x: x / count, total)
