"""Selective Synaptic Dampening (Foster, Schoepf and Brintrup, AAAI 2024).

SSD edits the trained weights once, with no training. With importances
``I_Df`` (forget set) and ``I_D`` (the training data), each parameter is

* selected when ``I_Df > alpha * I_D``            (the paper's Eq. 3), and
* if selected, multiplied by
  ``beta = min(lambda * I_D / I_Df, 1)``          (Eq. 4),

others stay as they are. Defaults alpha = 10, lambda = 1 (the paper's
values for ResNet-18 on CIFAR). Two importances (``settings.importance``):

``'batch'`` (the paper's code)
  SSD writes the importance as the diagonal Fisher ``E[(d log p / d theta)^2]``
  (Eq. 2), but its code squares the gradient of each MINI-BATCH's mean loss
  and averages the squares over batches (batches of 128, BatchNorm in
  inference mode; D = the remain data followed by the forget data, in order,
  unshuffled, as its loader concatenates them). This is what fmjax runs by
  default, so alpha = 10 means what it means in the paper's tables.

``'fisher'`` (fmjax's exact per-example diagonal Fisher)
  ``F_f`` and ``F_r``: mean per-example empirical Fisher on D_f and on the
  remain data (:func:`fmjax.fisher.make_fisher_diag`), the quantity Eq. 2
  writes. Here the paper's rule cannot be used unchanged: the per-example
  Fisher is ADDITIVE, so the Fisher of D = D_f + D_r is the mixture
  ``I_D = p F_f + (1 - p) F_r`` with ``p = |D_f| / |D|``, hence
  ``I_Df / I_D <= 1 / p`` everywhere. Removing one of ten balanced classes
  (p = 0.1), ``I_Df > 10 I_D`` selects no parameter at all, and in general
  the threshold's meaning would change with the forget fraction. The batch
  importance escapes this bound only because squaring a batch MEAN is not
  additive (gradients of a well-fit remain set cancel inside a batch).
  fmjax therefore compares the forget set with the data the model keeps:

  * selected when ``F_f > alpha * F_r``, scaled by ``min(lambda * F_r / F_f, 1)``.

  This is SSD's rule with the forget set taken out of the reference, whose
  ratio ``F_f / F_r`` is unbounded and independent of p; for p -> 0 the two
  rules coincide (``I_D -> F_r``), and for p > 0 the paper's selection on the
  mixture is exactly this selection at ``alpha' = alpha (1 - p) / (1 - alpha p)``.
  ``score_limit`` bounds the remain examples scored (a fixed random subset).

Both importances are taken at the trained weights, with BatchNorm in
inference mode; nothing is fine-tuned afterwards (epochs 0).
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from fmjax.fisher import make_fisher_diag
from fmjax.methods._gradients import batch_mean_grads
from fmjax.methods.base import FineTuned, FisherScoring, register
from fmjax.methods.fisher_mask import set_fisher
from fmjax.task import Edit, UnlearnTask, subset_seed


def ssd_dampen(params, importance_forget, importance_reference, *, alpha: float,
               lam: float):
  """SSD's selection and dampening (Eqs. 3-4) on pytrees of importances.

  Returns ``(new_params, selected)``: entries with ``I_f > alpha * I_ref``
  multiplied by ``min(lam * I_ref / I_f, 1)``; ``selected`` is the boolean
  pytree of those entries.
  """
  def one(p, f, r):
    sel = f > alpha * r
    beta = jnp.minimum(lam * r / jnp.where(sel, f, 1.0), 1.0)
    return jnp.where(sel, p * beta.astype(p.dtype), p), sel

  out = jax.tree.map(one, params, importance_forget, importance_reference)
  new = jax.tree.map(lambda p, o: o[0], params, out)
  sel = jax.tree.map(lambda p, o: o[1], params, out)
  return new, sel


def batch_importance(model, params, model_state, task: UnlearnTask, indices: np.ndarray,
                     batch_size: int, desc: str | None = None):
  """SSD's code importance: mean over mini-batches of the squared batch-mean gradient."""
  total, count = None, 0
  for g, _ in batch_mean_grads(model, params, model_state,
                               task.batches(indices, batch_size, desc=desc)):
    sq = jax.tree.map(jnp.square, g)
    total = sq if total is None else jax.tree.map(jnp.add, total, sq)
    count += 1
  return jax.tree.map(lambda t: t / count, total)


def ssd(model, params, model_state, task: UnlearnTask, settings: SSD,
        key: jax.Array) -> Edit:
  """Scores both sets and dampens the selected parameters (no fine-tuning)."""
  start = time.perf_counter()
  if settings.importance == "batch":
    i_f = batch_importance(model, params, model_state, task, task.forget,
                           settings.importance_batch_size, "SSD importance of the forget set")
    full = np.concatenate([task.remain, task.forget])
    i_ref = batch_importance(model, params, model_state, task, full, settings.importance_batch_size,
                             "SSD importance of the training data")
  else:
    seed = subset_seed(key)
    fd = make_fisher_diag(model, model_state, chunk_size=settings.fisher_block(task.image_shape),
                          devices=task.devices)
    i_f = set_fisher(fd, params, task, task.forget, settings, seed,
                     "Fisher of the forget set").mean()
    i_ref = set_fisher(fd, params, task, task.remain, settings, seed + 1,
                       "Fisher of the remain set").mean()
  jax.block_until_ready(i_ref)
  scored = time.perf_counter()
  new, selected = ssd_dampen(params, i_f, i_ref, alpha=settings.alpha,
                             lam=settings.dampening)
  jax.block_until_ready(new)
  n_sel = sum(int(s.sum()) for s in jax.tree.leaves(selected))
  n_all = sum(s.size for s in jax.tree.leaves(selected))
  info = {"importance": settings.importance, "alpha": settings.alpha,
          "lambda": settings.dampening, "selected_fraction": n_sel / n_all}
  return Edit(new, model_state, None, info,
              {"score": scored - start, "dampen": time.perf_counter() - scored})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SSD(FineTuned, FisherScoring):
  """Selective Synaptic Dampening; no training (its authors' recipe).

  Attributes:
    alpha: the selection threshold alpha (Eq. 3).
    dampening: the dampening constant lambda (Eq. 4).
    importance: 'batch' (SSD's code: squared mini-batch mean gradients) or
      'fisher' (exact per-example diagonal Fisher; the rule above).
    importance_batch_size: mini-batch of the batch importance (the code's 128
      for random forgetting; its full-class scripts use 64).
  """
  name: ClassVar[str] = "ssd"
  tags: ClassVar[tuple[str, ...]] = ("successor",)
  limits: ClassVar[dict[str, str]] = {"alpha": ">0", "dampening": ">0",
                                      "importance_batch_size": ">=1"}
  epochs: int | None = 0
  alpha: float = 10.0
  dampening: float = 1.0
  importance: Literal["batch", "fisher"] = "batch"
  importance_batch_size: int = 128

  def edit(self, model, params, model_state, task, key):
    return ssd(model, params, model_state, task, self, key)
