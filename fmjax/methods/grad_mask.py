"""GradMask (Section 3.3): mask the channels with the largest integrated gradients.

``B_ij = A_ij * int_0^1 dL(x_i)/dA_ij (alpha A) d alpha`` (Sundararajan et al.
2017), the Riemann sum of :func:`fmjax.methods._channels.make_integrated_gradients`
with ``settings.ig_steps`` steps, one conv layer scaled at a time (every layer in ONE
compiled program), averaged over the forget set only (the paper: ``|D_r| >> |D_f|``).
``B`` attributes the LOSS:
a channel that supports the forget predictions lowers the loss, so its
``B`` is negative. The channels ranked first are those with the most negative
``B_{D_f,j}`` (the score is ``-B``), i.e. those the forget predictions rely
on. Their kernel parameters are zeroed; R counts parameters as in
ActivationMask. Needs no remain data.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import jax
import numpy as np

from fmjax import sharding
from fmjax.methods import _channels
from fmjax.methods.base import REMAIN_OPTIONAL, MaskMethod, examples_per_block, fill_none, register
from fmjax.task import Edit, UnlearnTask, subset_seed

APPLY_KWARGS = {"train": False}


def integrated_gradient_scores(model, params, model_state, task: UnlearnTask,
                               settings: GradMask, seed: int) -> dict[str, np.ndarray]:
  """``{conv path: B_{D_f}}``, the mean integrated gradient per channel."""
  variables = {"params": params, **model_state}
  layers = _channels.channel_layers(model, variables, task.image_shape, APPLY_KWARGS)
  forget = task.subsample(task.forget, settings.ig_limit, seed)
  ig = _channels.make_integrated_gradients(model, APPLY_KWARGS, layers, settings.ig_steps)
  out = {"/".join(layer.conv): np.zeros(layer.channels, np.float64) for layer in layers}
  desc = f"integrated gradients, {len(layers)} layers"
  for batch in task.batches(forget, settings.score_block(task.image_shape), desc=desc):
    for path, scores in ig(variables, batch["image"], batch["label"]).items():
      out[path] += np.asarray(sharding.real_rows(scores, batch), np.float64).sum(0)
  return {path: total / len(forget) for path, total in out.items()}


def grad_mask(model, params, model_state, task: UnlearnTask, settings: GradMask,
              key: jax.Array) -> Edit:
  start = time.perf_counter()
  seed = subset_seed(key)
  b = integrated_gradient_scores(model, params, model_state, task, settings, seed)
  return _channels.masked_channels_edit(model, params, model_state, task.image_shape,
                                       {k: -v for k, v in b.items()}, settings.mask_ratio(),
                                       {"score": time.perf_counter() - start})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class GradMask(MaskMethod):
  """The paper's Section 3.3: zero the channels with the largest integrated gradients on D_f.

  Attributes:
    score_batch_size: examples per scoring batch (one integrated-gradients program each).
      None: the data's (:func:`fmjax.methods.base.examples_per_block` of 256: 256 up to
      32x32 images, 64 at 64x64), which :func:`fmjax.unlearning.make_config` fills in.
    ig_steps: Riemann steps of the integrated gradients.
    ig_limit: score at most this many forget examples. None: all.
  """
  name: ClassVar[str] = "grad_mask"
  remain: ClassVar[str] = REMAIN_OPTIONAL
  tags: ClassVar[tuple[str, ...]] = ("paper",)
  limits: ClassVar[dict[str, str]] = {"score_batch_size": ">=1", "ig_steps": ">=1",
                                      "ig_limit": ">=1"}
  score_batch_size: int | None = None
  ig_steps: int = 20
  ig_limit: int | None = None
  SCORE_BATCH: ClassVar[int] = 256   # at 32x32

  def score_block(self, image_shape: tuple[int, ...]) -> int:
    """``score_batch_size``, or the data's default for images of ``image_shape``."""
    return self.score_batch_size or examples_per_block(self.SCORE_BATCH, image_shape)

  def for_data(self, info):
    return fill_none(super().for_data(info), score_batch_size=self.score_block(info.image_shape))

  def edit(self, model, params, model_state, task, key):
    return grad_mask(model, params, model_state, task, self, key)
