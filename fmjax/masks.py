"""Parameter masks: boolean pytrees shaped like the params; True = set to zero.

A mask is built from a score pytree by :func:`top_fraction_mask` (the largest
``round(ratio * n)`` scores over all eligible entries, globally across leaves),
applied with :func:`apply_mask` and summarised per layer with
:func:`mask_stats`. The scores of the paper's methods:

* :func:`fisher_mask_scores` -- FisherMask, ``F_f - F_r`` (Section 3.1).
* :func:`random_mask` -- RandomMask, uniform at the same ratio.

Which parameters may be masked is the ``maskable`` option:

* ``'all'`` (default): every parameter, kernels, biases and BatchNorm scales
  and shifts alike. The paper scores "every parameter" for FisherMask
  (Section 3.1 selects the top R "parameters" with no restriction), and it
  attributes GradMask's weaker results to masking only convolutions so that
  "information in the BatchNorm layer can not be touched" (Section 4.1).
  R counts all parameters either way.
* ``'kernels'``: only leaves named ``kernel`` (conv and dense weights), the
  choice of the paper's channel-level baselines.
* a function ``(path: str, leaf) -> bool`` for anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fmjax import _checks

Maskable = str | Callable[[str, Any], bool]
MASKABLE = ("all", "kernels")
WEIGHTINGS = ("sum", "mean")


def eligible_tree(params: Any, maskable: Maskable = "all") -> Any:
  """Boolean per-leaf pytree: which leaves of ``params`` may be masked."""
  paths = _checks.tree_paths(params)
  leaves, treedef = jax.tree_util.tree_flatten(params)
  if callable(maskable):
    flags = [bool(maskable(p, x)) for p, x in zip(paths, leaves, strict=True)]
  elif maskable == "all":
    flags = [True] * len(leaves)
  elif maskable == "kernels":
    flags = [p.split("/")[-1] == "kernel" for p in paths]
  else:
    raise ValueError(f"maskable must be one of {MASKABLE} or a function (path, leaf) -> bool, "
                     f"got {maskable!r}.")
  if not any(flags):
    raise ValueError(f"maskable={maskable!r} leaves no parameter eligible for masking among "
                     f"{paths[:5]}{' ...' if len(paths) > 5 else ''}.")
  return jax.tree_util.tree_unflatten(treedef, flags)


def top_fraction_mask(scores: Any, ratio: float, *, maskable: Maskable = "all",
                      params: Any = None) -> Any:
  """Masks the ``round(ratio * n)`` highest-scoring eligible entries.

  Selection is global across all leaves. Ties break deterministically: among
  equal scores, the entry that comes first in leaf order (then row-major
  order within the leaf) is selected first.

  Args:
    scores: pytree of real arrays; higher means "mask first".
    ratio: fraction in (0, 1] of the eligible entries to mask.
    maskable: which leaves are eligible (see module docstring).
    params: optional; when given, ``scores`` must match its structure and shapes.

  Returns:
    A boolean pytree shaped like ``scores`` with exactly ``round(ratio * n)``
    True entries, n the number of eligible entries.
  """
  ratio = _checks.check_ratio(ratio)
  if params is not None:
    _checks.check_same_structure(scores, params, name="scores", reference_name="params",
                                 fix="Compute scores from these params (e.g. with "
                                     "fisher_mask_scores) so every leaf matches.")
  _checks.check_finite_tree(scores, name="scores",
                            fix="NaN scores cannot be ranked; check the Fisher inputs.")
  eligible = eligible_tree(scores, maskable)
  leaves, treedef = jax.tree_util.tree_flatten(scores)
  flags = jax.tree_util.tree_leaves(eligible)
  # Selection on the host: one sort, no per-leaf device programs to compile.
  chosen = [np.ravel(np.asarray(x)) for x, f in zip(leaves, flags, strict=True) if f]
  flat = np.concatenate(chosen).astype(np.promote_types(np.result_type(*chosen), np.float32))
  k = int(round(ratio * flat.size))
  selected = np.zeros(flat.size, bool)
  if k > 0:
    order = np.argsort(-flat, kind="stable")   # descending, first index wins ties
    selected[order[:k]] = True
  out, offset = [], 0
  for x, f in zip(leaves, flags, strict=True):
    if f:
      out.append(jnp.asarray(selected[offset:offset + np.size(x)].reshape(np.shape(x))))
      offset += np.size(x)
    else:
      out.append(jnp.zeros(np.shape(x), bool))
  return jax.tree_util.tree_unflatten(treedef, out)


def apply_mask(params: Any, mask: Any) -> Any:
  """Sets the masked entries of ``params`` to zero; others are returned unchanged."""
  _checks.check_same_structure(mask, params, name="mask", reference_name="params",
                               fix="Build the mask from these params' scores "
                                   "(top_fraction_mask or random_mask).")
  for path, m in zip(_checks.tree_paths(mask), jax.tree_util.tree_leaves(mask), strict=True):
    if jnp.asarray(m).dtype != jnp.bool_:
      raise ValueError(f"mask leaf '{path}' has dtype {jnp.asarray(m).dtype}; masks are "
                       "boolean (True = set to zero). Use mask.astype(bool) if it is 0/1.")
  return _apply(params, mask)


@jax.jit
def _apply(params: Any, mask: Any) -> Any:
  return jax.tree.map(lambda p, m: jnp.where(m, jnp.zeros_like(p), p), params, mask)


def fisher_mask_scores(fisher_forget, fisher_remain, *, weighting: str = "sum") -> Any:
  """FisherMask scores ``F_f - F_r`` (Section 3.1, Proposition 1).

  Args:
    fisher_forget: :class:`fmjax.fisher.FisherEstimate` over the forget set.
    fisher_remain: :class:`fmjax.fisher.FisherEstimate` over the remain set.
    weighting: ``'sum'`` (default, the paper): ``F_f`` and ``F_r`` are each
      set's CONTRIBUTION to the Fisher diagonal, sums over its examples, so a
      remain set 9x larger weighs 9x more. ``'mean'`` compares per-set means;
      in an independent reference run (PyTorch, ResNet20 on Fashion-MNIST,
      one class forgotten, R = 0.02 and 0.04, no fine-tuning) it zeroed
      weights the whole model needs and collapsed it to predicting one class,
      while the sums removed the class and kept the remain accuracy.

  Returns:
    Pytree of scores shaped like the Fisher; larger means "mask first".
  """
  for name, value in (("fisher_forget", fisher_forget), ("fisher_remain", fisher_remain)):
    if not (hasattr(value, "total") and hasattr(value, "count")):
      raise ValueError(
          f"{name} must be a FisherEstimate (total, count), got {type(value).__name__}. Use "
          "fisher_diag.sum(params, batch) or accumulate_fisher_diag(...), which keep the "
          "example count the paper's sums and the 'mean' weighting need; for your own "
          "pytrees, wrap them: FisherEstimate(total=tree, count=n).")
  if weighting not in WEIGHTINGS:
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}. 'sum' is the "
                     "paper's definition (each set's contribution to the Fisher).")
  _checks.check_same_structure(fisher_forget.total, fisher_remain.total, name="fisher_forget",
                               reference_name="fisher_remain",
                               fix="Compute both Fisher estimates for the same params.")
  if weighting == "sum":
    f, r = fisher_forget.total, fisher_remain.total
  else:
    f, r = fisher_forget.mean(), fisher_remain.mean()
  return jax.tree.map(jnp.subtract, f, r)


def fisher_mask(fisher_forget, fisher_remain, ratio: float, *, weighting: str = "sum",
                maskable: Maskable = "all") -> Any:
  """The FisherMask: top ``ratio`` of ``F_f - F_r`` (see :func:`fisher_mask_scores`).

  Raises:
    ValueError: an argument is not a :class:`fmjax.fisher.FisherEstimate`, the
      two differ in structure, or ``ratio`` is outside (0, 1].
  """
  scores = fisher_mask_scores(fisher_forget, fisher_remain, weighting=weighting)
  return top_fraction_mask(scores, ratio, maskable=maskable)


def random_mask(key: jax.Array, params: Any, ratio: float, *,
                maskable: Maskable = "all") -> Any:
  """RandomMask: exactly ``round(ratio * n)`` eligible entries, uniformly at random."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  # One draw for all leaves: a single RNG program instead of one per leaf.
  u = jax.random.uniform(key, (sum(int(np.size(x)) for x in leaves),))
  scores, offset = [], 0
  for x in leaves:
    scores.append(u[offset:offset + np.size(x)].reshape(np.shape(x)))
    offset += int(np.size(x))
  return top_fraction_mask(jax.tree_util.tree_unflatten(treedef, scores), ratio,
                           maskable=maskable)


class LayerMaskStats(NamedTuple):
  """Mask statistics of one leaf."""
  path: str
  masked: int
  size: int

  @property
  def fraction(self) -> float:
    return self.masked / self.size if self.size else 0.0


def mask_stats(mask: Any) -> list[LayerMaskStats]:
  """Per-leaf count and fraction of masked entries, in leaf order."""
  counts = jax.device_get([jnp.sum(m) for m in jax.tree_util.tree_leaves(mask)])
  return [LayerMaskStats(p, int(c), int(np.size(m)))
          for p, c, m in zip(_checks.tree_paths(mask), counts,
                             jax.tree_util.tree_leaves(mask), strict=True)]


def format_mask_stats(stats: list[LayerMaskStats], *, only_masked: bool = True) -> str:
  """A Markdown table of :func:`mask_stats`, with a total row."""
  rows = [s for s in stats if s.masked or not only_masked]
  total_m = sum(s.masked for s in stats)
  total_n = sum(s.size for s in stats)
  lines = ["| layer | masked | size | fraction |", "|---|---:|---:|---:|"]
  lines += [f"| {s.path} | {s.masked} | {s.size} | {s.fraction:.4f} |" for s in rows]
  lines.append(f"| **total** | {total_m} | {total_n} | "
               f"{(total_m / total_n if total_n else 0):.4f} |")
  return "\n".join(lines)
