"""Input checks shared by the public functions.

Every check raises a ``ValueError`` whose message says what was received, what
was expected and how to fix it. Checks run on the host, on concrete values; a
check that would need a concrete value while tracing is skipped silently (the
caller is then inside its own ``jit`` and owns its inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds a value (not a tracer inside ``jit``/``vmap``)."""
  return not isinstance(x, jax.core.Tracer)


def tree_paths(tree: Any) -> list[str]:
  """Readable '/'-joined key paths of the leaves of ``tree``, in leaf order."""
  return [jax.tree_util.keystr(p, simple=True, separator="/")
          for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def check_same_structure(tree: Any, reference: Any, *, name: str, reference_name: str,
                         fix: str) -> None:
  """Raises if ``tree`` and ``reference`` differ in structure or leaf shapes."""
  t_def = jax.tree_util.tree_structure(tree)
  r_def = jax.tree_util.tree_structure(reference)
  if t_def != r_def:
    got, want = set(tree_paths(tree)), set(tree_paths(reference))
    missing, extra = sorted(want - got), sorted(got - want)
    detail = []
    if missing:
      detail.append(f"missing leaves {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
      detail.append(f"unexpected leaves {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    if not detail:
      detail.append(f"tree structure {t_def} != {r_def}")
    raise ValueError(
        f"{name} does not have the structure of {reference_name}: {'; '.join(detail)}. {fix}")
  for path, a, b in zip(tree_paths(tree), jax.tree_util.tree_leaves(tree),
                        jax.tree_util.tree_leaves(reference), strict=True):
    if np.shape(a) != np.shape(b):
      raise ValueError(
          f"{name} leaf '{path}' has shape {np.shape(a)}, but {reference_name} has "
          f"{np.shape(b)} there. {fix}")


def check_ratio(ratio: float, *, name: str = "ratio") -> float:
  """Returns ``ratio`` as a float after checking 0 < ratio <= 1."""
  try:
    value = float(ratio)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a number in (0, 1], got {ratio!r}.") from None
  if not 0.0 < value <= 1.0 or not np.isfinite(value):
    raise ValueError(
        f"{name} must lie in (0, 1] (the fraction of parameters to mask), got {ratio!r}. "
        "The paper uses 0.02 for CIFAR and 0.04 for MNIST and Tiny-ImageNet; "
        "for 'no mask' skip masking instead of passing 0.")
  return value


def check_batch(batch: Any, *, num_classes: int | None = None, allow_empty: bool = False
                ) -> tuple[Any, Any]:
  """Checks a ``{'image', 'label'}`` batch; returns ``(images, labels)``.

  Args:
    batch: a mapping with ``image`` [B, ...] and integer ``label`` [B].
    num_classes: when given and the labels are concrete, labels must lie in
      ``[0, num_classes)``.
  """
  if not isinstance(batch, Mapping):
    raise ValueError(
        f"batch must be a mapping with keys 'image' and 'label' (the TFDS convention), "
        f"got {type(batch).__name__}. Pass e.g. {{'image': x, 'label': y}}.")
  missing = [k for k in ("image", "label") if k not in batch]
  if missing:
    raise ValueError(
        f"batch is missing {missing}; it has keys {sorted(batch)}. fisher_diag needs "
        "'image' [B, H, W, C] and integer 'label' [B]; rename your keys "
        "(e.g. {'image': x, 'label': y}).")
  images, labels = batch["image"], batch["label"]
  if np.ndim(labels) != 1:
    raise ValueError(
        f"batch['label'] must be a vector of class indices [B], got shape {np.shape(labels)}. "
        "Pass integer labels, not one-hot vectors (use argmax(axis=-1) on one-hot labels).")
  if np.ndim(images) < 2 or np.shape(images)[0] != np.shape(labels)[0]:
    raise ValueError(
        f"batch['image'] must have a leading batch axis matching batch['label']: got image "
        f"shape {np.shape(images)} and label shape {np.shape(labels)}.")
  if np.shape(labels)[0] == 0 and not allow_empty:
    raise ValueError("the batch is empty (0 examples); pass at least one example.")
  image_dtype = np.asarray(images).dtype if is_concrete(images) else images.dtype
  if not jax.numpy.issubdtype(image_dtype, jax.numpy.floating):   # bfloat16 included
    raise ValueError(
        f"batch['image'] has dtype {image_dtype}; fisher_diag takes the model's float inputs. "
        "Normalise uint8 images first with the dataset's statistics, e.g. "
        "fmjax.data.normalize(images, ds.mean, ds.std), as training does.")
  if not np.issubdtype(np.asarray(labels).dtype if is_concrete(labels) else labels.dtype,
                       np.integer):
    raise ValueError(
        f"batch['label'] must hold integer class indices, got dtype {labels.dtype}. "
        "Cast with labels.astype(int).")
  if num_classes is not None and is_concrete(labels) and np.size(labels):
    lab = np.asarray(labels)
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(
          f"batch['label'] has values in [{lo}, {hi}], but the model outputs {num_classes} "
          f"classes, so labels must lie in [0, {num_classes - 1}]. Check the dataset's "
          "label mapping or the model's num_classes.")
  return images, labels


def check_finite_tree(tree: Any, *, name: str, fix: str) -> None:
  """Raises if any leaf of ``tree`` holds NaN or Inf (concrete trees only)."""
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves or not all(is_concrete(x) for x in leaves):
    return
  finite = jax.device_get([jax.numpy.isfinite(x).all() for x in leaves])
  bad = [p for p, ok in zip(tree_paths(tree), finite, strict=True) if not ok]
  if bad:
    raise ValueError(
        f"{name} has non-finite values (NaN or Inf) in {len(bad)} leaves, e.g. "
        f"{bad[:5]}. {fix}")


def check_fields(obj: Any, rules: Mapping[str, str], *,
                 fixes: Mapping[str, str] | None = None) -> None:
  """Checks fields of a settings dataclass against simple rules.

  ``rules`` maps a field name to one of ``'>=1'`` (a positive count),
  ``'>=0'``, ``'>0'``, ``'(0,1)'``, ``'(0,1]'`` or ``'[0,1]'``; None values pass (they mean
  "the default"). Raises a ValueError naming the field, the value and the
  valid range, and the hint ``fixes`` holds for that field, if any (a hint
  never follows an error about another field).
  """
  tests = {">=1": (lambda v: v >= 1, "an integer >= 1"), ">=0": (lambda v: v >= 0, ">= 0"),
           ">0": (lambda v: v > 0, "> 0"), "(0,1)": (lambda v: 0 < v < 1, "in (0, 1)"),
           "(0,1]": (lambda v: 0 < v <= 1, "in (0, 1]"),
           "[0,1]": (lambda v: 0 <= v <= 1, "in [0, 1]")}
  for name, rule in rules.items():
    value = getattr(obj, name)
    if value is None:
      continue
    ok, wanted = tests[rule]
    if (isinstance(value, bool) or not isinstance(value, int | float | np.number)
        or not np.isfinite(value) or not ok(value)):
      option = "--" + name.replace("_", "-")
      tail = f" {fixes[name]}" if fixes and name in fixes else ""
      raise ValueError(f"{name} ({option}) must be {wanted}, got {value!r}.{tail}")
