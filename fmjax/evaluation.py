"""Evaluation of a classifier on uint8 images: predictions and accuracies."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fmjax import _compiled, sharding
from fmjax.data.preprocess import normalize


def make_predict_fn(model: nn.Module, mean: Any, std: Any, mesh: Any = None) -> Callable:
  """``predict(params, model_state, images_uint8 [B, H, W, C]) -> logits [B, K]``.

  One compiled program per model (mean and std are arguments), shared by every
  predict function of that model in the process. With a ``mesh``
  (:mod:`fmjax.sharding`) the images are split across its devices and the
  parameters replicated; a batch that does not divide by the device count is
  padded, and the logits then have rows for the padding after the B real ones.
  """
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  compiled = _compiled_predict(model)
  return functools.partial(_call_predict, compiled, mean, std, mesh)


def _call_predict(compiled, mean, std, mesh, params, model_state, images):
  if mesh is not None:
    images = sharding.host_batch({"image": images}, mesh)["image"]
    params, model_state = sharding.replicate((params, model_state), mesh)
  return compiled(params, model_state, images, mean, std)


def _compiled_predict(model: nn.Module) -> Callable:
  def predict(params, model_state, images, mean, std):
    return model.apply({"params": params, **model_state}, normalize(images, mean, std),
                       train=False)

  return _compiled.compiled(("predict", model), lambda: jax.jit(predict))


def predict_all(predict: Callable, params: Any, model_state: Any, images: np.ndarray,
                batch_size: int = 500) -> np.ndarray:
  """Logits for all ``images`` in batches; the last batch is padded (one compile)."""
  if len(images) == 0:
    return np.zeros((0, 0), np.float32)
  size = min(batch_size, len(images))
  out = []
  for i in range(0, len(images), size):
    chunk = images[i:i + size]
    n = len(chunk)
    if n < size:
      chunk = np.concatenate([chunk, np.zeros((size - n,) + chunk.shape[1:], chunk.dtype)])
    out.append(sharding.to_host(predict(params, model_state, chunk))[:n])
  return np.concatenate(out)


def accuracy_report(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """Overall accuracy and per-class accuracy (None for a class with no examples)."""
  pred = logits.argmax(-1)
  correct = pred == labels
  per_class = [float(correct[labels == c].mean()) if np.any(labels == c) else None
               for c in range(num_classes)]
  return {"accuracy": float(correct.mean()) if len(labels) else None,
          "per_class_accuracy": per_class}
