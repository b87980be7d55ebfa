"""A per-example likelihood-ratio attack between unlearned and retrained models (U-LiRA).

Definition (after Hayes et al., SaTML 2025, "Inexact unlearning needs more careful
evaluations to avoid a false sense of privacy", and LiRA, Carlini et al. 2022, whose
reference is tensorflow/privacy ``research/mi_lira_2021``): for each forget example,
fit a Gaussian to its confidence (:func:`logit_confidence`) under the *shadow* unlearned
models and one under the *shadow* retrained models; a held-out *target* model (unlearned
or retrained, the attacker does not know which) is scored by the log-likelihood ratio

    Λ(c) = log N(c; μ_u, σ_u²) - log N(c; μ_r, σ_r²)

(positive: it looks unlearned, i.e. the example's influence is still visible). With
``variance='fixed'`` both Gaussians of an example share one σ², the pooled variance of
the two shadow samples over ALL examples (LiRA's choice when shadow models are few);
``'per_example'`` fits each example's own σ_u² and σ_r². Over every (target model, example)
pair the attack's ROC gives the AUC and the TPR at 1% and 0.1% FPR (an unlearning that
matches retraining leaves AUC 0.5 and TPR@FPR ≈ FPR); per example, the AUC over its
target models shows which examples stay exposed.
"""

from __future__ import annotations

import numpy as np

VARIANCE_FLOOR = 1e-8


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
  """P(score of a positive > a negative) + P(tie) / 2 (Mann-Whitney), over all entries."""
  pos, neg = np.ravel(pos), np.ravel(neg)
  scores = np.concatenate([pos, neg])
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(scores.size)
  sorted_scores = scores[order]
  # Average ranks over ties.
  _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  avg = first + (counts - 1) / 2.0 + 1.0
  ranks[order] = np.repeat(avg, counts)
  u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2.0
  return float(u / (pos.size * neg.size))


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float) -> float:
  """The largest TPR of a threshold ``score > t`` whose FPR is at most ``fpr``."""
  neg = np.sort(neg)[::-1]
  allowed = int(np.floor(fpr * neg.size))      # negatives that may score above t
  t = neg[allowed] if allowed < neg.size else -np.inf
  return float(np.mean(pos > t))


def _gaussian_loglik(c: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
  return -0.5 * (np.log(2 * np.pi * var) + (c - mu) ** 2 / var)


def lira(shadow_unlearned: np.ndarray, shadow_retrained: np.ndarray,
         target_unlearned: np.ndarray, target_retrained: np.ndarray, *,
         variance: str = "per_example") -> dict:
  """U-LiRA on confidences ``[models, E]`` of E forget examples.

  Args:
    shadow_unlearned / shadow_retrained: the models the attacker fits on (>= 2 each).
    target_unlearned / target_retrained: held-out models it is evaluated on.
    variance: 'per_example' or 'fixed' (see the module docstring).

  Returns:
    ``auc``, ``tpr_at_1%``, ``tpr_at_0.1%`` over all (target, example) pairs;
    ``per_example_auc`` ``[E]``; ``scores_unlearned`` / ``scores_retrained`` (Λ of the
    target models, ``[models, E]``).
  """
  arrays = [np.asarray(a, np.float64) for a in (shadow_unlearned, shadow_retrained,
                                                target_unlearned, target_retrained)]
  names = ("shadow_unlearned", "shadow_retrained", "target_unlearned", "target_retrained")
  for name, a in zip(names, arrays, strict=True):
    if a.ndim != 2 or a.shape[1] != arrays[0].shape[1] or a.shape[0] < (2 if "shadow" in name
                                                                         else 1):
      raise ValueError(f"{name} must be [models, examples] with {arrays[0].shape[1:]} "
                       f"examples and at least {2 if 'shadow' in name else 1} models; got "
                       f"{a.shape}.")
  if variance not in ("per_example", "fixed"):
    raise ValueError(f"variance must be 'per_example' or 'fixed', got {variance!r}.")
  su, sr, tu, tr = arrays
  mu_u, mu_r = su.mean(0), sr.mean(0)
  if variance == "fixed":
    pooled = np.concatenate([su - mu_u, sr - mu_r]).var(ddof=0)
    var_u = var_r = np.full_like(mu_u, max(pooled, VARIANCE_FLOOR))
  else:
    var_u = np.maximum(su.var(0, ddof=1), VARIANCE_FLOOR)
    var_r = np.maximum(sr.var(0, ddof=1), VARIANCE_FLOOR)

  def score(c):
    return _gaussian_loglik(c, mu_u, var_u) - _gaussian_loglik(c, mu_r, var_r)

  pos, neg = score(tu), score(tr)
  return {"auc": auc(pos.ravel(), neg.ravel()),
          "tpr_at_1%": tpr_at_fpr(pos.ravel(), neg.ravel(), 0.01),
          "tpr_at_0.1%": tpr_at_fpr(pos.ravel(), neg.ravel(), 0.001),
          "per_example_auc": np.array([auc(pos[:, i], neg[:, i])
                                       for i in range(pos.shape[1])]),
          "scores_unlearned": pos, "scores_retrained": neg}


def split_models(n: int, seed: int, shadow_fraction: float = 0.5) -> tuple[np.ndarray,
                                                                             np.ndarray]:
  """A seeded split of ``n`` models into shadow (fit) and target (evaluate) indices."""
  if n < 3:
    raise ValueError(f"an attack needs at least 3 models of each kind (2 shadows, 1 "
                     f"target), got {n}.")
  perm = np.random.default_rng(seed).permutation(n)
  k = min(max(2, int(round(shadow_fraction * n))), n - 1)
  return np.sort(perm[:k]), np.sort(perm[k:])
