"""The paper's fine-tuning, Retrain's training and the relearn readout, as procedures.

After a method edits the model, fine-tuning runs SGD on the remain data with
the original optimiser (momentum, weight decay) and a fresh optimiser state.
The learning rate is, by default, the original schedule compressed into
S = 5 epochs and held at its last rate afterwards (Section 3.4,
:func:`fmjax.schedules.compressed_schedule`); a constant rate serves the
learning-rate ablation (Section 4.5), and the uncompressed schedule serves
Retrain (:func:`finetune_schedule`).

Masked weights start at zero; by default fine-tuning may move them again (the
paper's procedure). With ``freeze=mask`` they stay exactly where they are
(:func:`fmjax.steps.sgd`).

Each is a one-stage :class:`fmjax.procedures.Procedure` (:func:`finetune_procedure`)
that :class:`fmjax.runner.Runner` runs like every other training, so it
stacks with any compatible run (:func:`fmjax.runner.stack`).
"""

from __future__ import annotations

import optax

from fmjax import schedules
from fmjax.procedures import CrossEntropy, Procedure, Stage


def finetune_schedule(original: schedules.StepSchedule, mode: str | float, *,
                      steps_per_epoch: int, compress_epochs: float) -> optax.Schedule:
  """The learning rate of fine-tuning.

  Args:
    original: the schedule the model was trained with.
    mode: ``'compressed'`` (the paper): the original schedule replayed in
      ``compress_epochs`` epochs, then its last rate; ``'original'``: the
      original schedule itself (Retrain); a number: that constant rate.
    steps_per_epoch: optimiser steps per fine-tuning epoch.
    compress_epochs: S.
  """
  if isinstance(mode, int | float) and not isinstance(mode, bool):
    if not mode > 0:
      raise ValueError(f"a constant fine-tuning learning rate must be positive, got {mode}.")
    return optax.constant_schedule(float(mode))
  if mode == "compressed":
    return schedules.compressed_schedule(original, compress_epochs, steps_per_epoch)
  if mode == "original":
    return schedules.step_schedule(original, steps_per_epoch)
  raise ValueError(f"fine-tuning lr must be 'compressed', 'original' or a positive number, "
                   f"got {mode!r}.")


def finetune_procedure(lr: float | optax.Schedule, *, batch_size: int, momentum: float,
                       weight_decay: float, stream: str = "remain") -> Procedure:
  """Cross-entropy on ``stream`` (D_r; the relearn readout: ``'forget'``) at ``lr``,
  a ragged last batch filled up, the training's SGD."""
  return Procedure((Stage(CrossEntropy(), stream, batch_size),), lr, momentum=momentum,
                   weight_decay=weight_decay)
