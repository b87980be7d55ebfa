"""Diagonal Fisher information of a classifier, from per-example gradients.

    fisher_diag = fmjax.make_fisher_diag(model, {"batch_stats": stats})
    F = fisher_diag(params, {"image": x, "label": y})   # mean over the batch

Two paths compute the same numbers: ``vmap(grad)`` (any model; the reference)
and a per-layer path for models built from flax Conv, Dense and BatchNorm
layers (exact, about 2x faster on CPU). ``path='auto'`` picks the latter when
it applies.
"""

from fmjax.fisher._api import (
    KINDS,
    PATHS,
    FisherDiagFn,
    FisherEstimate,
    PathInfo,
    accumulate_fisher_diag,
    make_fisher_diag,
)

__all__ = ["KINDS", "PATHS", "FisherDiagFn", "FisherEstimate", "PathInfo",
           "accumulate_fisher_diag", "make_fisher_diag"]
