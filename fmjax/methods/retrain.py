"""Retrain: the reference w_r*, trained from scratch on the remain set.

The edit is a fresh initialisation; the shared fine-tuning then trains it with
the ORIGINAL (uncompressed) schedule for the original number of epochs.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from fmjax.methods.base import FineTuned, register
from fmjax.task import Edit, UnlearnTask


def retrain(model, params, model_state, task: UnlearnTask, settings: Retrain,
            key: jax.Array) -> Edit:
  """Fresh weights from ``key`` (the trained ``params`` are not used)."""
  del params, model_state, settings
  start = time.perf_counter()
  variables = dict(model.init(key, jnp.zeros((1,) + task.image_shape, jnp.float32)))
  new_params = variables.pop("params")
  return Edit(new_params, variables, None, {}, {"init": time.perf_counter() - start})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Retrain(FineTuned):
  """The reference: a fresh model trained on D_r as the original was.

  Attributes:
    epochs: None: the original training's epochs.
    lr: 'original': the original schedule, uncompressed.
  """
  name: ClassVar[str] = "retrain"
  tags: ClassVar[tuple[str, ...]] = ("paper", "reference")
  epochs: int | None = None
  lr: Literal["compressed", "original"] | float = "original"

  def edit(self, model, params, model_state, task, key):
    return retrain(model, params, model_state, task, self, key)
