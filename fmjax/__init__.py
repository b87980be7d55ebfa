"""fmjax: machine unlearning with Fisher masking, in JAX.

The building blocks, each in a module named for what it holds:

* :mod:`fmjax.fisher` -- ``make_fisher_diag(model, state)`` binds a model once;
  ``fisher_diag(params, batch)`` is the diagonal (empirical or true) Fisher.
* :mod:`fmjax.masks` -- boolean pytree masks: top-R selection, FisherMask and
  RandomMask scores, apply, per-layer statistics.
* :mod:`fmjax.schedules` -- the original step schedule and its replay
  compressed into S fine-tuning epochs, as optax schedules.
* :mod:`fmjax.models` -- CIFAR-style classifiers as flax.linen Modules.
* :mod:`fmjax.training` -- the jitted SGD training step and resumable runs.
* :mod:`fmjax.task` -- what every method sees and returns (task, settings, edit).
* :mod:`fmjax.methods` -- every unlearning method, one module each, as a pure
  edit ``(model, params, state, task, settings, key) -> Edit``.
* :mod:`fmjax.finetuning` -- the one fine-tuning routine all methods share.
* :mod:`fmjax.readouts` -- the one evaluation routine: accuracies, volatility,
  membership inference, relearn time.
* :mod:`fmjax.unlearning` -- a whole unlearning run from a checkpoint, resumable.
* :mod:`fmjax.sharding` -- the data mesh every phase runs on; batch splitting
  and zero-weight padding.
* :mod:`fmjax.distributed` -- several processes or hosts, joined from the
  environment.
* :mod:`fmjax.xla_flags` -- the faster CPU convolution flag, set by the entry
  points (importing fmjax sets nothing), and the flags of simulated CPU devices.
"""

from fmjax.fisher import (
    FisherDiagFn,
    FisherEstimate,
    PathInfo,
    accumulate_fisher_diag,
    make_fisher_diag,
)
from fmjax.masks import (
    apply_mask,
    fisher_mask,
    fisher_mask_scores,
    format_mask_stats,
    mask_stats,
    random_mask,
    top_fraction_mask,
)
from fmjax.schedules import (
    CIFAR_SCHEDULE,
    MNIST_SCHEDULE,
    StepSchedule,
    compressed_schedule,
    step_schedule,
)

__version__ = "0.1.0"

__all__ = [
    "CIFAR_SCHEDULE", "MNIST_SCHEDULE", "FisherDiagFn", "FisherEstimate", "PathInfo",
    "StepSchedule", "accumulate_fisher_diag", "apply_mask", "compressed_schedule",
    "fisher_mask", "fisher_mask_scores", "format_mask_stats", "make_fisher_diag",
    "mask_stats", "random_mask", "step_schedule", "top_fraction_mask",
]
