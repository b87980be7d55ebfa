"""What differs between two JSON configs, as a refusal names it: the settings that changed
(``method.ratio: 0.04 -> 0.1``), not the whole blocks that hold them."""

from __future__ import annotations

import re
from typing import Any

_ABSENT = object()   # a key one config has and the other lacks
_SHOWN_CHANGES = 4   # a refusal names this many changed settings, then counts the rest


def _changes(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
  """``(key, old, new)`` of each setting that differs between two JSON configs, walked
  into dicts (``method.ratio``) and equal-length lists (``units[3].unlearn.ratio``), so
  that a refusal names the settings that changed rather than whole blocks."""
  if old == new:
    return []
  if isinstance(old, dict) and isinstance(new, dict):
    return [c for k in sorted(set(old) | set(new), key=str)
            for c in _changes(old.get(k, _ABSENT), new.get(k, _ABSENT),
                              f"{key}.{k}" if key else str(k))]
  if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
    return [c for i, (a, b) in enumerate(zip(old, new, strict=True))
            for c in _changes(a, b, f"{key}[{i}]")]
  return [(key, old, new)]


def _shown(value: Any) -> str:
  return "(absent)" if value is _ABSENT else repr(value)


def _grouped(changes: list[tuple[str, Any, Any]]) -> list[str]:
  """``key: old -> new`` lines, one per change; the same change at several list positions
  is one line listing them (``units[1-4,7].unlearn.ratio: 0.08 -> 0.1``)."""
  groups: dict[tuple[str, str], list[tuple[int, ...]]] = {}
  for key, a, b in changes:
    pattern = re.sub(r"\[\d+\]", "[]", key)
    where = tuple(int(i) for i in re.findall(r"\[(\d+)\]", key))
    groups.setdefault((pattern, f"{_shown(a)} -> {_shown(b)}"), []).append(where)
  lines = []
  for (pattern, change), places in groups.items():
    parts = pattern.split("[]")
    key = parts[0] + "".join(f"[{_ranges(sorted({p[i] for p in places}))}]{part}"
                             for i, part in enumerate(parts[1:]))
    lines.append(f"{key}: {change}")
  return lines


def _ranges(numbers: list[int]) -> str:
  """``[1, 2, 3, 5]`` -> ``'1-3,5'``."""
  runs: list[list[int]] = []
  for n in numbers:
    if runs and n == runs[-1][-1] + 1:
      runs[-1].append(n)
    else:
      runs.append([n])
  return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def changed_settings(old: dict, new: dict) -> str:
  """``'key: old -> new, ...'`` for the settings that differ between ``old`` and ``new``,
  walked into nested dicts and equal-length lists; the same change at several list
  positions is one item (``units[1-4,7].unlearn.ratio: 0.08 -> 0.1``); a key one side
  lacks is ``(absent)``; after four items the rest are counted."""
  shown = _grouped(_changes(old, new))
  if len(shown) > _SHOWN_CHANGES:
    shown = [*shown[:_SHOWN_CHANGES], f"and {len(shown) - _SHOWN_CHANGES} more"]
  return ", ".join(shown)
