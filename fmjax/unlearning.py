"""One unlearning run: a trained checkpoint, a method, a forget set -> records.

:func:`unlearn` loads the original model from its training work directory,
builds the :class:`fmjax.methods.UnlearnTask` (a full class, a random subset
across classes, or the outliers the model was trained with), runs the
method's edit, then the shared fine-tuning routine (or the method's own
training procedure, :mod:`fmjax.procedures`, in the same epoch loop), and
evaluates with the shared readouts:

* on the original model (``phase: original``),
* right after the edit (``phase: edit``, epoch 0: the "mask only" numbers),
* after every fine-tuning epoch (``phase: finetune``),
* once at the end, relearn time (``phase: relearn``).

Everything goes to ``metrics.jsonl`` in the run's work directory, with
``config.json``, an orbax checkpoint per epoch (state, optimiser and mask)
and ``summary.json``. Killed and restarted with the same config, a run
resumes after its last completed epoch and ends exactly where an
uninterrupted run ends.

The jobs live in :mod:`fmjax.run` (config, build, phases, drivers, summary);
this module is their public face. Every phase splits its batches across
``devices`` (:mod:`fmjax.sharding`).
:func:`unlearn_many` runs several such runs at once, the fine-tunings that
stack as one compiled program (:func:`fmjax.runner.stack`): the paper's
fine-tuning, Retrain and every method's own procedure alike.
"""

from fmjax.methods.base import default_ratio
from fmjax.run.build import budget_for, build_task, check_setting, run_epochs
from fmjax.run.config import (
                              UnlearnConfig,
                              config_fields,
                              config_setting,
                              for_method,
                              make_config,
)
from fmjax.run.drivers import unlearn, unlearn_many
from fmjax.run.phases import UnlearnResult
from fmjax.run.summary import run_time, summarize, summary_line

__all__ = ["UnlearnConfig", "UnlearnResult", "budget_for", "build_task", "check_setting",
           "config_fields", "config_setting", "default_ratio", "for_method", "make_config",
           "run_epochs", "run_time", "summarize", "summary_line", "unlearn", "unlearn_many"]
