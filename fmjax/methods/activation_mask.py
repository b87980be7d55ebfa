"""ActivationMask (Section 3.2): mask the channels most active on the forget set.

For each conv output channel j, ``A_ij`` is the spatial mean of its
post-activation value (Conv-BN-ReLU) on example i; the score is
``A_{D_f,j} - A_{D_r,j}``, the difference of the set means. The kernel
parameters of the top channels are zeroed. R counts parameters: channels are
taken in score order until their parameters reach R of the conv parameters
(:mod:`fmjax.methods._channels` says why of those). With no remain data,
``A_{D_r} = 0``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import jax
import numpy as np

from fmjax import sharding
from fmjax.methods import _channels
from fmjax.methods.base import REMAIN_OPTIONAL, MaskMethod, Scoring, register
from fmjax.task import Edit, UnlearnTask, subset_seed

APPLY_KWARGS = {"train": False}


def channel_set_means(channel_means, variables, task: UnlearnTask, indices: np.ndarray,
                      batch_size: int) -> dict[str, np.ndarray]:
  """Mean over ``indices`` of the per-example channel activations ``{path: [C]}``."""
  sums: dict[str, np.ndarray] = {}
  for batch in task.batches(indices, batch_size, desc="channel means"):
    out = sharding.real_rows(channel_means(variables, batch["image"]), batch)
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64).sum(0)
  return {k: v / len(indices) for k, v in sums.items()}


def activation_scores(model, params, model_state, task: UnlearnTask,
                      settings: ActivationMask, seed: int) -> dict[str, np.ndarray]:
  """``{conv path: A_f - A_r}`` per channel."""
  variables = {"params": params, **model_state}
  means = _channels.make_channel_means(model, APPLY_KWARGS, where="post")
  a_f = channel_set_means(means, variables, task, task.forget, settings.score_batch_size)
  if task.remain is None:
    return a_f
  remain = task.subsample(task.remain, settings.score_limit, seed)
  a_r = channel_set_means(means, variables, task, remain, settings.score_batch_size)
  return {k: a_f[k] - a_r[k] for k in a_f}


def activation_mask(model, params, model_state, task: UnlearnTask, settings: ActivationMask,
                    key: jax.Array) -> Edit:
  start = time.perf_counter()
  seed = subset_seed(key)
  scores = activation_scores(model, params, model_state, task, settings, seed)
  return _channels.masked_channels_edit(model, params, model_state, task.image_shape,
                                       scores, settings.mask_ratio(),
                                       {"score": time.perf_counter() - start})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class ActivationMask(MaskMethod, Scoring):
  """The paper's Section 3.2: zero the channels most active on D_f relative to D_r."""
  name: ClassVar[str] = "activation_mask"
  remain: ClassVar[str] = REMAIN_OPTIONAL
  tags: ClassVar[tuple[str, ...]] = ("paper",)

  def edit(self, model, params, model_state, task, key):
    return activation_mask(model, params, model_state, task, self, key)
