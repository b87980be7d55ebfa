"""RandomMask: zero a uniformly random R fraction of the parameters, then fine-tune."""

from __future__ import annotations

import time

import jax

from fmjax import masks
from fmjax.task import Edit, MethodSettings, UnlearnTask


def random_mask(model, params, model_state, task: UnlearnTask, settings: MethodSettings,
                key: jax.Array) -> Edit:
  """Masks exactly ``round(R * n)`` eligible entries drawn with ``key``."""
  del model, task
  start = time.perf_counter()
  mask = masks.random_mask(key, params, settings.ratio, maskable=settings.maskable)
  new = masks.apply_mask(params, mask)
  jax.block_until_ready(new)
  return Edit(new, model_state, mask, {}, {"mask": time.perf_counter() - start})
