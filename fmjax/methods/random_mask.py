"""RandomMask: zero a uniformly random R fraction of the parameters, then fine-tune."""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar, Literal

import jax

from fmjax import masks
from fmjax.methods.base import REMAIN_OPTIONAL, MaskMethod, register
from fmjax.task import Edit, UnlearnTask


def random_mask(model, params, model_state, task: UnlearnTask, settings: RandomMask,
                key: jax.Array) -> Edit:
  """Masks exactly ``round(R * n)`` eligible entries drawn with ``key``."""
  del model, task
  start = time.perf_counter()
  mask = masks.random_mask(key, params, settings.mask_ratio(), maskable=settings.maskable)
  new = masks.apply_mask(params, mask)
  jax.block_until_ready(new)
  return Edit(new, model_state, mask, {}, {"mask": time.perf_counter() - start})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomMask(MaskMethod):
  """The paper's baseline: zero a random R of the parameters, then fine-tune.

  Attributes:
    maskable: which parameters may be zeroed ('all' or 'kernels').
  """
  name: ClassVar[str] = "random_mask"
  remain: ClassVar[str] = REMAIN_OPTIONAL
  tags: ClassVar[tuple[str, ...]] = ("paper",)
  maskable: Literal["all", "kernels"] = "all"

  def edit(self, model, params, model_state, task, key):
    return random_mask(model, params, model_state, task, self, key)
