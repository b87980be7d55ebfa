"""Reference path: per-example gradients with ``jax.vmap(jax.grad)``.

General (any differentiable ``logits_fn``) and the path every faster path is
tested against. Memory grows with the chunk size times the parameter count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

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
    # True Fisher: sum_c p(c|x) (d log p(c|x))^2, one backward pass per class.
    jac = jax.jacrev(log_probs)(params, x)  # leaves [K, *leaf]
    probs = jax.lax.stop_gradient(jnp.exp(log_probs(params, x)))
    return jax.tree.map(
        lambda j: w * jnp.tensordot(probs, jnp.square(j.astype(acc_dtype)), axes=1), jac)

  per_example = jax.vmap(one_example)(images, labels, weights.astype(acc_dtype))
  return jax.tree.map(lambda t: t.sum(axis=0), per_example)
