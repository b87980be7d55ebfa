"""Per-example forgetting quality from ensembles of unlearned and retrained models.

Pure functions over arrays of per-example confidences ``[models, examples]``
(:func:`logit_confidence`), one per published score:

* :func:`forgetting_quality` / :func:`epsilons` / :func:`final_score`: the NeurIPS
  2023 Machine Unlearning Challenge's per-example ε and its score;
* :func:`lira`: a per-example likelihood-ratio attack (U-LiRA style), AUC and TPR at
  low FPR;
* :func:`klom`: KLoM, the KL divergence of each example's margin distributions.

Population attacks (a classifier over all examples' confidences) stay in
:mod:`fmjax.readouts`.
"""

from fmjax.privacy._confidence import logit_confidence
from fmjax.privacy._epsilon import (
    DELTA,
    EPSILON_CAP,
    bucket_points,
    epsilons,
    example_epsilon,
    final_score,
    forgetting_quality,
)
from fmjax.privacy._klom import klom
from fmjax.privacy._lira import auc, lira, split_models, tpr_at_fpr

__all__ = ["DELTA", "EPSILON_CAP", "auc", "bucket_points", "epsilons", "example_epsilon",
           "final_score", "forgetting_quality", "klom", "lira", "logit_confidence",
           "split_models", "tpr_at_fpr"]
