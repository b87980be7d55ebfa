"""Reference path: per-example gradients with ``jax.vmap(jax.grad)``.

General (any differentiable ``logits_fn``) and the path every faster path is
tested against. Memory grows with the chunk size times the parameter count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fmjax.fisher._classes import class_chunked

LogitsFn = Callable[[Any, jax.Array], jax.Array]  # (params, images [B, ...]) -> [B, K]


def sq_grad_sum(logits_fn: LogitsFn, params: Any, images: jax.Array, labels: jax.Array,
                weights: jax.Array, *, kind: str, acc_dtype: Any) -> Any:
  """Sum over examples of ``weights[n] * (d log p(y_n | x_n) / d params)^2``.

  Args:
    logits_fn: maps (params, images [B, ...]) to logits [B, K]; examples must not
      interact (BatchNorm in inference mode).
    params: the parameter pytree.
    images: [B, ...] inputs.
    labels: [B] integer labels (ignored for ``kind='true'``).
    weights: [B] non-negative per-example weights (0 marks padding).
    kind: 'empirical' (gradient at the given label) or 'true' (expectation over
      the model's own predictive distribution).
    acc_dtype: the dtype the squares are accumulated in.

  Returns:
    A pytree shaped like ``params`` in ``acc_dtype``.
  """

  def log_probs(p, x):
    return jax.nn.log_softmax(logits_fn(p, x[None])[0].astype(acc_dtype))

  def one_example(x, y, w):
    if kind == "empirical":
      g = jax.grad(lambda p: log_probs(p, x)[y])(params)
      return jax.tree.map(lambda t: w * jnp.square(t.astype(acc_dtype)), g)
    # True Fisher: sum_c p(c|x) (d log p(c|x))^2, one backward pass per class, the
    # classes in a loop (:mod:`fmjax.fisher._classes`).
    lp, vjp_fn = jax.vjp(lambda p: log_probs(p, x), params)
    num_classes = lp.shape[-1]
    probs = jax.lax.stop_gradient(jnp.exp(lp))

    def of_classes(c):   # classes c [k] (index K pads: a zero row): their share of the sum
      # Cotangents sqrt(p_c) e_c: the backward pass is linear, so the squares carry p_c.
      # Built from the probabilities, the cotangent varies over a shard_map's mesh axes
      # exactly as ``lp`` does (a constant one-hot does not, and vjp refuses it there).
      pc = jnp.where(c < num_classes, probs[jnp.minimum(c, num_classes - 1)], 0.0)
      cot = jax.nn.one_hot(c, num_classes, dtype=lp.dtype) * jnp.sqrt(pc)[:, None]
      (jac,) = jax.vmap(vjp_fn)(cot)
      return jax.tree.map(lambda j: w * jnp.square(j.astype(acc_dtype)).sum(axis=0), jac)
    return class_chunked(of_classes, num_classes)

  per_example = jax.vmap(one_example)(images, labels, weights.astype(acc_dtype))
  return jax.tree.map(lambda t: t.sum(axis=0), per_example)
