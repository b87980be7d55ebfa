"""Finetune: fine-tune the trained model on the remain set, with no edit first."""

from __future__ import annotations

import jax

from fmjax.task import Edit, MethodSettings, UnlearnTask


def no_edit(model, params, model_state, task: UnlearnTask, settings: MethodSettings,
            key: jax.Array) -> Edit:
  """The identity edit: the trained model, nothing masked or frozen. The work of the
  methods that use it is the training that follows (Finetune's shared fine-tuning, or
  a successor's procedure)."""
  del model, task, settings, key
  return Edit(params, model_state, None, {}, {})


finetune = no_edit
