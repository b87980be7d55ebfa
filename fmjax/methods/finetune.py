"""Finetune: fine-tune the trained model on the remain set, with no edit first."""

from __future__ import annotations

import jax

from fmjax.task import Edit, MethodSettings, UnlearnTask


def finetune(model, params, model_state, task: UnlearnTask, settings: MethodSettings,
             key: jax.Array) -> Edit:
  """The identity edit; all the work is the shared fine-tuning that follows."""
  del model, task, settings, key
  return Edit(params, model_state, None, {}, {})
