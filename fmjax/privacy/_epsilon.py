"""The NeurIPS 2023 Machine Unlearning Challenge's per-example ε and forgetting quality.

Definitions (Triantafillou et al. 2024, "Are we making progress in unlearning?";
its evaluation code, google-deepmind/unlearning_evaluation ``metric.py`` and
``main.py``; re-implemented here from their description, vectorised over thresholds):

* For each forget example, the confidences (:func:`logit_confidence`) under N unlearned
  and M retrained models are two samples. The *positive* distribution is the one whose
  median is larger.
* An attacker picks one decision rule from two families, each a grid of thresholds
  (100 per unit of confidence): a single threshold ``c >= t`` (between the smallest and
  largest confidence of both samples), and an interval ``l <= c <= r`` that predicts the
  peakier distribution (smaller range; right ends from its minimum plus the smaller
  range minus 2 to its maximum plus 2, for each right end 400 left ends from
  ``r - width - 2`` to ``r - width + 2``).
* Each threshold's false-positive and false-negative rates give
  ``ε = max(log(1 - δ - FPR) - log(FNR), log(1 - δ - FNR) - log(FPR))`` (clipped at 0),
  with ``δ = 1e-5``; a threshold with FPR = FNR = 0 separates the two samples (ε = ∞);
  one with exactly one of them 0 is discarded (too few models to tell). The example's ε
  is the largest over both families, capped at 50. An example whose two samples' ranges
  differ by more than a factor 100 gets the cap directly (a collapsed unlearned
  distribution).
* Forgetting quality F: each ε falls in a bucket of width 0.5 starting at 0, worth
  1, 1/2, 1/4, ... points, up to ``ceil(log(N - 1))``; an ε beyond the last bucket earns
  nothing. F is the mean over forget examples, in [0, 1]; the challenge's final score is
  ``F * (RA_u / RA_r) * (TA_u / TA_r)`` (mean retain and test accuracies of the unlearned
  and the retrained models).

Edge cases the reference code leaves open, decided here: two constant samples (both
ranges 0) give ε = 0 when equal and the cap otherwise (the reference divides 0 by 0);
an example where every threshold is discarded gets the cap (the reference stops with an
assertion).
"""

from __future__ import annotations

import math

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0


def _count_at_least(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
  return sorted_x.size - np.searchsorted(sorted_x, t, side="left")


def _count_between(sorted_x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  n = np.searchsorted(sorted_x, hi, side="right") - np.searchsorted(sorted_x, lo, side="left")
  return np.maximum(n, 0)


def _single_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(FPR, FNR) of ``c >= t`` predicting positive, over the single-threshold grid."""
  lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
  t = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
  tpr = _count_at_least(pos, t) / pos.size
  fpr = _count_at_least(neg, t) / neg.size
  return fpr, 1.0 - tpr


def _interval_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(FPR, FNR) of ``l <= c <= r`` predicting the peakier sample, over the interval grid."""
  pos_range, neg_range = pos[-1] - pos[0], neg[-1] - neg[0]
  width = min(pos_range, neg_range)
  if pos_range >= neg_range:   # 'positive' is the peakier (narrower) sample
    pos, neg = neg, pos
  lo, hi = pos[0] + width - BUFFER, pos[-1] + BUFFER
  right = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
  n_left = int(math.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
  offsets = np.linspace(-width - BUFFER, -width + BUFFER, n_left)
  left = (right[:, None] + offsets[None, :]).reshape(-1)
  right = np.repeat(right, n_left)
  tpr = _count_between(pos, left, right) / pos.size
  fpr = _count_between(neg, left, right) / neg.size
  return fpr, 1.0 - tpr


def _threshold_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
  """ε of each threshold; NaN where it is discarded."""
  with np.errstate(divide="ignore", invalid="ignore"):
    a = np.log(1.0 - delta - fpr) - np.log(fnr)
    b = np.log(1.0 - delta - fnr) - np.log(fpr)
    eps = np.clip(np.fmax(a, b), 0.0, None)
  eps = np.where((fpr == 0) != (fnr == 0), np.nan, eps)   # exactly one of them 0
  return np.where((fpr == 0) & (fnr == 0), np.inf, eps)


def example_epsilon(unlearned: np.ndarray, retrained: np.ndarray, *,
                    delta: float = DELTA, cap: float = EPSILON_CAP) -> float:
  """The challenge's ε of ONE forget example from its two confidence samples (``[N]``,
  ``[M]``); see the module docstring."""
  u = np.sort(np.asarray(unlearned, np.float64).reshape(-1))
  r = np.sort(np.asarray(retrained, np.float64).reshape(-1))
  if u.size < 2 or r.size < 2 or not (np.isfinite(u).all() and np.isfinite(r).all()):
    raise ValueError(f"each example needs at least 2 finite confidences per ensemble; got "
                     f"{u.size} unlearned and {r.size} retrained (finite: "
                     f"{bool(np.isfinite(u).all())}, {bool(np.isfinite(r).all())}).")
  pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
  largest, smallest = sorted((pos[-1] - pos[0], neg[-1] - neg[0]), reverse=True)
  if largest == 0:
    return 0.0 if pos[0] == neg[0] else cap
  if smallest / largest < 0.01:
    return cap
  parts = [_interval_rates(pos, neg), _single_rates(pos, neg)]
  eps = np.concatenate([_threshold_epsilons(f, n, delta) for f, n in parts])
  eps = eps[~np.isnan(eps)]
  return cap if eps.size == 0 else float(min(eps.max(), cap))


def epsilons(unlearned: np.ndarray, retrained: np.ndarray, *, delta: float = DELTA,
             cap: float = EPSILON_CAP) -> np.ndarray:
  """Per-example ε: ``unlearned`` ``[N, E]`` and ``retrained`` ``[M, E]`` confidences of E
  forget examples under N unlearned and M retrained models; returns ``[E]``."""
  u, r = np.asarray(unlearned), np.asarray(retrained)
  if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
    raise ValueError(f"confidences must be [models, examples] with the same examples; got "
                     f"unlearned {u.shape} and retrained {r.shape}.")
  return np.array([example_epsilon(u[:, i], r[:, i], delta=delta, cap=cap)
                   for i in range(u.shape[1])])


def bucket_points(eps: np.ndarray, n_models: int) -> np.ndarray:
  """Each ε's points: buckets ``[0, .5), [.5, 1), ...`` worth 1, 1/2, 1/4, ... up to
  ``ceil(log(n_models - 1))`` (the largest ε N models can show); 0 beyond."""
  if n_models < 3:
    raise ValueError(f"forgetting quality needs at least 3 unlearned models, got {n_models}.")
  top = math.ceil(math.log(n_models - 1))
  buckets = int(top / 0.5)                    # buckets whose end is <= top
  index = np.floor(np.asarray(eps, np.float64) / 0.5)
  return np.where(index < buckets, 0.5 ** np.minimum(index, buckets), 0.0)


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, *,
                       delta: float = DELTA) -> tuple[float, np.ndarray]:
  """The challenge's forgetting quality F and the per-example ε behind it."""
  eps = epsilons(unlearned, retrained, delta=delta)
  return float(bucket_points(eps, np.asarray(unlearned).shape[0]).mean()), eps


def final_score(quality: float, retain_unlearned: float, retain_retrained: float,
                test_unlearned: float, test_retrained: float) -> float:
  """``F * (RA_u / RA_r) * (TA_u / TA_r)``, the challenge's utility-adjusted score (mean
  accuracies over each ensemble)."""
  if min(retain_retrained, test_retrained) <= 0:
    raise ValueError("the retrained models' accuracies must be positive.")
  return quality * (retain_unlearned / retain_retrained) * (test_unlearned / test_retrained)
