"""KLoM: the KL divergence of each example's margin distribution, unlearned vs retrained.

Definition (Georgiev et al., "Attribute-to-Delete: Machine Unlearning via Datamodel
Matching"; its benchmark's code, RoyRin/data-unlearning-bench ``eval.py``): for each
example, the margins (:func:`logit_confidence`) under the unlearned ensemble (p) and
the retrained, "oracle" ensemble (q), clipped to [-100, 100], are binned into 20 equal
bins spanning both samples (one bin of width 1 when every margin is equal), and
``KL(p || q) = sum_b p_b log(p_b / max(q_b, 1e-5))`` over the bins where ``p_b > 0``
(q renormalised after the floor, as ``scipy.stats.entropy`` does). 0 means the two
ensembles are indistinguishable on the example; it grows without a fixed bound as they
separate (about ``log(1 / 1e-5) = 11.5`` when no bin is shared). Bins follow
``numpy.histogram`` (the last bin includes its right edge; the reference's
``np.digitize`` drops the largest sample).
"""

from __future__ import annotations

import numpy as np

BINS = 20
FLOOR = 1e-5
CLIP = 100.0


def klom(unlearned: np.ndarray, retrained: np.ndarray, *, bins: int = BINS,
         floor: float = FLOOR, clip: float = CLIP) -> np.ndarray:
  """Per-example KLoM from margins ``unlearned`` ``[N, E]`` and ``retrained`` ``[M, E]``;
  returns ``[E]``."""
  u, r = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
  if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1] or min(u.shape[0],
                                                                    r.shape[0]) < 1:
    raise ValueError(f"margins must be [models, examples] with the same examples; got "
                     f"unlearned {u.shape} and retrained {r.shape}.")
  u, r = np.clip(u, -clip, clip), np.clip(r, -clip, clip)
  out = np.empty(u.shape[1])
  for i in range(u.shape[1]):
    lo = min(u[:, i].min(), r[:, i].min())
    hi = max(u[:, i].max(), r[:, i].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    p = np.histogram(u[:, i], edges)[0] / u.shape[0]
    q = np.histogram(r[:, i], edges)[0] / r.shape[0]
    q = np.where(p > 0, np.maximum(q, floor), q)
    q = q / q.sum()
    keep = p > 0
    out[i] = float(np.sum(p[keep] * np.log(p[keep] / q[keep])))
  return out
