"""The one progress bar of fmjax: on a terminal by default, quiet otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any


def progress_bar(total: int, desc: str, enabled: bool | None, *, unit: str = "step"):
  """A tqdm bar over ``total`` units; ``enabled=None`` shows it only when
  standard error is a terminal (so logs and CI output stay clean)."""
  from tqdm.auto import tqdm
  disable = (not sys.stderr.isatty()) if enabled is None else not enabled
  return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False)


def iterate(items: Iterable[Any], total: int, desc: str | None, enabled: bool | None, *,
            unit: str = "batch") -> Iterator[Any]:
  """``items`` with a bar named ``desc`` (no bar when ``desc`` is None)."""
  if desc is None:
    yield from items
    return
  bar = progress_bar(total, desc, enabled, unit=unit)
  try:
    for item in items:
      yield item
      bar.update(1)
  finally:
    bar.close()
