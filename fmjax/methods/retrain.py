"""Retrain: the reference w_r*, trained from scratch on the remain set.

The edit is a fresh initialisation; the shared fine-tuning routine then
trains it with the ORIGINAL (uncompressed) schedule for the original number
of epochs (:mod:`fmjax.unlearning` picks that schedule for this method).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from fmjax.task import Edit, MethodSettings, UnlearnTask


def retrain(model, params, model_state, task: UnlearnTask, settings: MethodSettings,
            key: jax.Array) -> Edit:
  """Fresh weights from ``key`` (the trained ``params`` are not used)."""
  del params, model_state, settings
  start = time.perf_counter()
  variables = dict(model.init(key, jnp.zeros((1,) + task.image_shape, jnp.float32)))
  new_params = variables.pop("params")
  return Edit(new_params, variables, None, {}, {"init": time.perf_counter() - start})
