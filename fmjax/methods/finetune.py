"""Finetune: fine-tune the trained model on the remain set, with no edit first."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from fmjax.methods.base import FineTuned, register


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Finetune(FineTuned):
  """The paper's baseline: no edit, the shared fine-tuning on D_r (the base's edit)."""
  name: ClassVar[str] = "finetune"
  tags: ClassVar[tuple[str, ...]] = ("paper",)
