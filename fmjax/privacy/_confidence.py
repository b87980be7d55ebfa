"""The per-example statistic every ensemble score compares: the logit-scaled confidence."""

from __future__ import annotations

import numpy as np


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """``log p_y - log(1 - p_y)`` of each example's label, computed stably.

  It equals the margin ``z_y - logsumexp(z_{k != y})`` of the logits ``z``, which is how
  it is computed here (exact in float64 for any logit scale, no ``1e-45`` guards):
  LiRA's score (Carlini et al. 2022, tensorflow/privacy ``research/mi_lira_2021``), the
  NeurIPS 2023 unlearning challenge's confidence (google-deepmind/unlearning_evaluation,
  ``metric.py``) and KLoM's margin (RoyRin/data-unlearning-bench, ``eval.py``) are this
  one number.

  Args:
    logits: ``[..., N, K]`` logits (any leading axes: models, epochs).
    labels: ``[N]`` integer labels in ``[0, K)``.

  Returns:
    ``[..., N]`` float64 confidences.
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  if logits.ndim < 2 or labels.ndim != 1 or logits.shape[-2] != labels.shape[0]:
    raise ValueError(f"logits must be [..., N, K] and labels [N]; got logits "
                     f"{logits.shape} and labels {labels.shape}.")
  k = logits.shape[-1]
  if k < 2:
    raise ValueError(f"logits need at least 2 classes, got {k}.")
  if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
                      or labels.max() >= k):
    raise ValueError(f"labels must be integers in [0, {k}); got dtype {labels.dtype}, range "
                     f"[{labels.min()}, {labels.max()}].")
  onehot = np.arange(k) == labels[:, None]                        # [N, K]
  correct = np.take_along_axis(logits, np.broadcast_to(labels[:, None], logits.shape[:-1]
                                                       + (1,)), axis=-1)[..., 0]
  others = np.where(onehot, -np.inf, logits)
  top = others.max(axis=-1, keepdims=True)
  lse = top[..., 0] + np.log(np.exp(others - top).sum(axis=-1))
  return correct - lse
