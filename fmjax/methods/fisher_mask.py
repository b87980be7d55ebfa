"""FisherMask (Section 3.1): zero the top R of ``F_f - F_r``, then fine-tune.

``F_f`` and ``F_r`` are the forget and remain sets' contributions (sums over
their examples) to the diagonal empirical Fisher, computed with BatchNorm in
inference mode by :func:`fmjax.fisher.make_fisher_diag`. With no remain data
(Section 4.3), ``F_r = 0`` and the mask is the top R of ``F_f``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from fmjax import masks
from fmjax.fisher import FisherEstimate, accumulate_fisher_diag, make_fisher_diag
from fmjax.methods.base import REMAIN_OPTIONAL, FisherScoring, MaskMethod, register
from fmjax.task import Edit, UnlearnTask, subset_seed


def set_fisher(fisher_diag, params, task: UnlearnTask, indices, settings: FisherMask,
               seed: int, desc: str | None = None) -> FisherEstimate:
  """A set's Fisher sum; on a subset of ``score_limit`` examples it is rescaled
  by ``len(indices) / len(subset)`` to estimate the whole set's sum."""
  subset = task.subsample(indices, settings.score_limit, seed)
  est = accumulate_fisher_diag(fisher_diag, params, task.batches(
      subset, settings.score_batch_size, desc=desc, shard=False))
  if len(subset) < len(indices):
    scale = len(indices) / len(subset)
    est = FisherEstimate(jax.tree.map(lambda t: t * scale, est.total), len(indices))
  return est


def fisher_mask(model, params, model_state, task: UnlearnTask, settings: FisherMask,
                key: jax.Array) -> Edit:
  """Scores, masks and returns the masked model (fine-tuning follows)."""
  start = time.perf_counter()
  seed = subset_seed(key)
  fd = make_fisher_diag(model, model_state, chunk_size=settings.fisher_block(task.image_shape),
                        devices=task.devices)
  f_forget = set_fisher(fd, params, task, task.forget, settings, seed, "Fisher of the forget set")
  if task.remain is None:
    f_remain = FisherEstimate(jax.tree.map(jnp.zeros_like, f_forget.total), 1)
  else:
    f_remain = set_fisher(fd, params, task, task.remain, settings, seed + 1,
                          "Fisher of the remain set")
  jax.block_until_ready(f_remain.total)
  scored = time.perf_counter()
  mask = masks.fisher_mask(f_forget, f_remain, settings.mask_ratio(), weighting=settings.weighting,
                           maskable=settings.maskable)
  new = masks.apply_mask(params, mask)
  jax.block_until_ready(new)
  probe = next(task.batches(task.forget[:2], 2, shard=False))
  info = {"fisher_path": fd.describe(params, probe).path}
  return Edit(new, model_state, mask, info,
              {"score": scored - start, "mask": time.perf_counter() - scored})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class FisherMask(MaskMethod, FisherScoring):
  """The paper's method: zero the top R of ``F_f - F_r``, then the shared fine-tuning.

  Attributes:
    maskable: which parameters may be zeroed ('all' or 'kernels'; see
      :mod:`fmjax.masks`).
    weighting: score weighting, 'sum' (the paper: set sums) or 'mean'.
  """
  name: ClassVar[str] = "fisher_mask"
  remain: ClassVar[str] = REMAIN_OPTIONAL
  tags: ClassVar[tuple[str, ...]] = ("paper",)
  maskable: Literal["all", "kernels"] = "all"
  weighting: Literal["sum", "mean"] = "sum"

  def edit(self, model, params, model_state, task, key):
    return fisher_mask(model, params, model_state, task, self, key)
