"""Influence: one Newton step towards the model without D_f (Section 2, first formula).

``w_r ~ w* + (|D_f| / |D_h|) (H + lambda I)^{-1} g_f``, where ``g_f`` is the mean
gradient of the loss over D_f, ``H`` the mean Hessian over the Hessian set D_h
and ``lambda`` a damping. With D_h = D this is Koh & Liang's (2017) group
influence, the paper's formula written with means (its sums ``L(w, D)``
absorb the |D| and |D_f| factors). With D_h = D_r and ``lambda`` equal to the
training objective's L2 strength (as seen per remain example), it is EXACTLY
one Newton step on the remain objective from ``w*`` when ``w*`` minimises the
full objective (``grad L(w*, D) = 0``), which the tests check.

``(H + lambda I)^{-1} g_f`` is solved by conjugate gradients from
Hessian-vector products (forward-over-reverse differentiation, never the
Hessian itself), on a fixed random subset of ``hessian_examples`` examples
of D_h; BatchNorm runs in inference mode. The Hessian of a deep network is
indefinite, so ``lambda`` must make ``H + lambda I`` positive enough for CG;
``info['cg_residual']`` says how well the system was solved.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from fmjax import sharding
from fmjax._progress import progress_bar
from fmjax.methods.base import FineTuned, register
from fmjax.task import Edit, UnlearnTask, subset_seed

HESSIAN_SETS = ("all", "remain")


def _tree_dot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                             jax.tree_util.tree_leaves(b), strict=True))


def _axpy(a, x, y):
  """``a * x + y`` on pytrees."""
  return jax.tree.map(lambda xi, yi: a * xi + yi, x, y)


def conjugate_gradient(matvec: Callable, b, *, iters: int, tol: float = 1e-10):
  """Solves ``A x = b`` for a symmetric operator on pytrees by conjugate gradients.

  For a positive-definite ``A`` this is plain CG. A deep network's damped
  Hessian may still have negative curvature: the iteration stops at the first
  direction with ``p^T A p <= 0`` (as truncated CG does) and returns the
  iterate of smallest residual seen, never a diverged one.

  Returns ``(x, relative residual ||b - A x|| / ||b||, iterations run)``.
  """
  x = jax.tree.map(jnp.zeros_like, b)
  r = b
  p = r
  rs = float(_tree_dot(r, r))
  b_norm = rs ** 0.5
  if b_norm == 0.0:
    return x, 0.0, 0
  best, best_res = x, 1.0
  done = 0
  for _ in range(iters):
    ap = matvec(p)
    curvature = float(_tree_dot(p, ap))
    if not curvature > 0:
      break
    alpha = rs / curvature
    x = _axpy(alpha, p, x)
    r = _axpy(-alpha, ap, r)
    done += 1
    rs_new = float(_tree_dot(r, r))
    if rs_new ** 0.5 / b_norm < best_res:
      best, best_res = x, rs_new ** 0.5 / b_norm
    if rs_new ** 0.5 <= tol * b_norm:
      break
    p = _axpy(rs_new / rs, p, r)
    rs = rs_new
  return best, best_res, done


def _loss_fn(model, model_state):
  """The summed loss of a batch; ``weight`` [B] (0 = padding) weights its terms."""
  def loss(params, images, labels, weight=None):
    logits = model.apply({"params": params, **model_state}, images, train=False)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    terms = jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
    return -jnp.sum(terms if weight is None else terms * weight)
  return loss


def influence_update(model, params, model_state, task: UnlearnTask, settings: Influence,
                     seed: int):
  """The Newton step ``delta`` (pytree like params) and facts about the solve."""
  if settings.hessian not in HESSIAN_SETS:
    raise ValueError(f"hessian must be one of {HESSIAN_SETS}, got "
                     f"{settings.hessian!r}.")
  if not settings.damping >= 0:
    raise ValueError(f"damping must be >= 0, got {settings.damping}.")
  loss = _loss_fn(model, model_state)
  grad_sum = jax.jit(jax.grad(loss))

  def hvp_sum(p, v, images, labels, weight):
    return jax.jvp(lambda q: jax.grad(loss)(q, images, labels, weight), (p,), (v,))[1]

  hvp_sum = jax.jit(hvp_sum)
  g = None
  for batch in task.batches(task.forget, settings.score_batch_size, desc="forget gradient"):
    part = grad_sum(params, batch["image"], batch["label"], sharding.example_weight(batch))
    g = part if g is None else jax.tree.map(jnp.add, g, part)
  g = jax.tree.map(lambda x: x / len(task.forget), g)
  if settings.hessian == "all":
    pool = task.forget if task.remain is None else np.concatenate([task.forget, task.remain])
  else:
    pool = task.remain
  h_set = task.subsample(np.sort(pool), settings.hessian_examples, seed)
  batches = list(task.batches(h_set, settings.score_batch_size))
  damping = settings.damping

  bar = progress_bar(settings.cg_iters, "conjugate gradients (Hessian-vector products)",
                     task.progress, unit="iteration")

  def matvec(v):
    bar.update(1)
    total = None
    for batch in batches:
      part = hvp_sum(params, v, batch["image"], batch["label"], sharding.example_weight(batch))
      total = part if total is None else jax.tree.map(jnp.add, total, part)
    return jax.tree.map(lambda t, vi: t / len(h_set) + damping * vi, total, v)

  x, residual, iterations = conjugate_gradient(matvec, g, iters=settings.cg_iters)
  bar.close()
  scale = len(task.forget) / len(pool)
  delta = jax.tree.map(lambda xi: scale * xi, x)
  return delta, {"cg_residual": residual, "cg_iterations": iterations,
                 "hessian_examples": int(len(h_set)),
                 "step_norm": float(jnp.sqrt(_tree_dot(delta, delta)))}


def influence(model, params, model_state, task: UnlearnTask, settings: Influence,
              key: jax.Array) -> Edit:
  """``w* + delta``; needs remain data for the Hessian set D or D_r."""
  start = time.perf_counter()
  seed = subset_seed(key)
  delta, info = influence_update(model, params, model_state, task, settings, seed)
  new = jax.tree.map(jnp.add, params, delta)
  jax.block_until_ready(new)
  return Edit(new, model_state, None, info, {"score": time.perf_counter() - start})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Influence(FineTuned):
  """One Newton step with an iterative inverse-Hessian solve; no fine-tuning by default.

  Attributes:
    damping: lambda added to the mean Hessian's diagonal.
    cg_iters: conjugate-gradient iterations.
    hessian_examples: examples of the Hessian estimate (a fixed random subset
      of the Hessian set).
    hessian: the Hessian set, 'all' (D, the paper's formula) or 'remain' (D_r:
      then the update is one exact Newton step on the remain objective).
    score_batch_size: examples per gradient and Hessian-vector batch.
  """
  name: ClassVar[str] = "influence"
  tags: ClassVar[tuple[str, ...]] = ("paper",)
  limits: ClassVar[dict[str, str]] = {"damping": ">=0", "cg_iters": ">=1",
                                      "hessian_examples": ">=1", "score_batch_size": ">=1"}
  epochs: int | None = 0
  damping: float = 0.01
  cg_iters: int = 20
  hessian_examples: int = 2048
  hessian: Literal["all", "remain"] = "all"
  score_batch_size: int = 256

  def edit(self, model, params, model_state, task, key):
    return influence(model, params, model_state, task, self, key)
