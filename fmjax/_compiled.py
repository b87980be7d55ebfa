"""One bounded cache of compiled programs, shared by every phase.

A jitted function is built once per hashable key (the model, which is a
frozen flax dataclass, and the static settings) and reused by later calls in
the same process: the next unlearning unit of an experiment compiles almost
nothing. At most :data:`MAX_ENTRIES` programs are kept, least recently used
first out, so a long process that goes through many models does not keep
every model and its compiled programs alive. A unit compiles a few programs per phase
(GradMask's integrated gradients of all layers are one; the true Fisher loops over
chunks of classes rather than compiling per class).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any

MAX_ENTRIES = 32
_CACHE: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()


def compiled(key: Hashable, build: Callable[[], Any]) -> Any:
  """``build()`` once per ``key``; an unhashable key builds every time."""
  try:
    hash(key)
  except TypeError:
    return build()
  if key in _CACHE:
    _CACHE.move_to_end(key)
    return _CACHE[key]
  value = _CACHE[key] = build()
  while len(_CACHE) > MAX_ENTRIES:
    _CACHE.popitem(last=False)
  return value


def clear() -> None:
  """Drops every cached program (the next call of each phase compiles again)."""
  _CACHE.clear()
