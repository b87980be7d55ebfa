"""Readouts of an unlearned model: accuracies, volatility, membership inference, relearn time.

One evaluation routine, :class:`Evaluator`, is used on the original model,
right after a method's edit (mask only) and after every fine-tuning epoch, so
every number of every method comes from the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from fmjax import evaluation, privacy
from fmjax.task import UnlearnTask


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  z = logits.astype(np.float64) - logits.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def mia_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per-example attack features [N, 3]: confidence p_y, entropy, loss -log p_y.

  Shapes: logits [N, K], labels [N] -> [N, 3] float64.
  """
  logp = _log_softmax(logits)
  p = np.exp(logp)
  logp_y = np.take_along_axis(logp, labels[:, None].astype(np.int64), 1)[:, 0]
  entropy = -(p * logp).sum(-1)
  return np.stack([np.exp(logp_y), entropy, np.minimum(-logp_y, 50.0)], axis=1)


def membership_inference(member_features: np.ndarray, nonmember_features: np.ndarray,
                         target_features: np.ndarray, *, seed: int = 0) -> dict:
  """Fits a member/non-member classifier and applies it to a target set.

  A logistic regression on standardised features (scikit-learn), trained on a
  balanced 70% of members (remain-train examples) and non-members (test
  examples), is scored on the other 30% (``attack_accuracy``; 0.5 = the
  model leaks nothing the attack can use) and then predicts the target (the
  forget set): ``member_rate`` is the fraction predicted as members. After
  unlearning, a forget set should look like data never seen: compare its
  member rate with Retrain's (SalUn's "MIA-efficacy" is 1 - member_rate).
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  rng = np.random.default_rng(seed)
  n = min(len(member_features), len(nonmember_features))
  if n < 10:
    raise ValueError(f"membership inference needs at least 10 members and non-members, got "
                     f"{len(member_features)} and {len(nonmember_features)}.")
  m = member_features[rng.permutation(len(member_features))[:n]]
  o = nonmember_features[rng.permutation(len(nonmember_features))[:n]]
  x = np.concatenate([m, o])
  y = np.concatenate([np.ones(n), np.zeros(n)])
  order = rng.permutation(2 * n)
  x, y = x[order], y[order]
  cut = int(0.7 * 2 * n)
  attack = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
  attack.fit(x[:cut], y[:cut])
  return {"attack_accuracy": float(attack.score(x[cut:], y[cut:])),
          "member_rate": float(attack.predict(target_features).mean())}


def svc_mia_efficacy(member_confidence: np.ndarray, nonmember_confidence: np.ndarray,
                     target_confidence: np.ndarray, *, seed: int = 0) -> float:
  """MIA-efficacy as SalUn's and l1-sparse's code computes it.

  An RBF support-vector classifier (scikit-learn ``SVC(C=3, gamma='auto',
  kernel='rbf')``, the code's settings) is fitted on ONE feature, the
  confidence ``p_y`` of the true label, of members (remain-train examples,
  label 1) against non-members (test examples, label 0), balanced: as many
  members as non-members, a seeded random subset of the larger side (the
  code takes the first ``len(test)`` remain examples). The efficacy is the
  fraction of the target (the forget set) predicted as NON-members: higher
  means the forget set looks less like training data; compare with Retrain's.

  How it differs from :func:`membership_inference` (the logistic attack fmjax
  also reports): one feature instead of three (confidence, entropy, loss); a
  non-linear decision rule (an RBF kernel can carve out a band of
  confidences); no held-out split, so no attack accuracy; and it reports the
  non-member rate (efficacy = 1 - member rate).

  Shapes: [M], [N], [T] confidences in [0, 1] -> a fraction.
  """
  from sklearn.svm import SVC

  rng = np.random.default_rng(seed)
  n = min(len(member_confidence), len(nonmember_confidence))
  if n < 10:
    raise ValueError(f"membership inference needs at least 10 members and non-members, got "
                     f"{len(member_confidence)} and {len(nonmember_confidence)}.")
  m = np.asarray(member_confidence)[rng.permutation(len(member_confidence))[:n]]
  o = np.asarray(nonmember_confidence)[rng.permutation(len(nonmember_confidence))[:n]]
  x = np.concatenate([m, o]).reshape(-1, 1)
  y = np.concatenate([np.ones(n), np.zeros(n)])
  attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
  return float(1.0 - attack.predict(np.asarray(target_confidence).reshape(-1, 1)).mean())


def volatility(curve: Sequence[float], *, kind: str) -> dict:
  """Volatility of an accuracy curve over epochs (Section 4.1).

  The paper writes ``1/(|T|-1) sum_t (Acc_t - Acc_{t-1})`` for the remain
  curve and ``1/(|T|-1) sum_t (Acc_t - Acc_{t+1})`` for the forget curve.
  Read literally these sums telescope to ``(last - first) / (|T|-1)``
  (``'signed'``), which cannot tell a smooth curve from one that
  "fluctuates severely", the property the paper measures. ``'abs'`` is the
  mean absolute epoch-to-epoch change ``1/(|T|-1) sum_t |Acc_t - Acc_{t-1}|``;
  ``'adverse'`` averages only the harmful moves (drops of the remain curve,
  rises of the forget curve). All three are reported.

  Args:
    curve: accuracies at epochs 0..T (epoch 0 = right after the edit).
    kind: 'remain' or 'forget'.
  """
  if kind not in ("remain", "forget"):
    raise ValueError(f"kind must be 'remain' or 'forget', got {kind!r}.")
  acc = np.asarray([c for c in curve if c is not None], np.float64)
  if acc.size < 2:
    return {"signed": None, "abs": None, "adverse": None}
  d = np.diff(acc)
  denom = acc.size - 1
  signed = d.sum() / denom if kind == "remain" else -d.sum() / denom
  adverse = np.clip(-d if kind == "remain" else d, 0, None).sum() / denom
  return {"signed": float(signed), "abs": float(np.abs(d).sum() / denom),
          "adverse": float(adverse)}


def _confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """p_y, the probability of the label (SalUn's MIA feature). [N, K], [N] -> [N]."""
  return mia_features(logits, labels)[:, 0]


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
  return float((logits.argmax(-1) == labels).mean()) if len(labels) else None


def _mean_loss(logits: np.ndarray, labels: np.ndarray) -> float | None:
  if not len(labels):
    return None
  logp = _log_softmax(logits)
  return float(-np.take_along_axis(logp, labels[:, None].astype(np.int64), 1).mean())


class Evaluator:
  """Evaluates a model on the views of an :class:`UnlearnTask`.

  Built once per run (one compiled prediction function); calling it returns a
  flat dict of readouts:

  * ``test_accuracy``; for class removal ``forget_test_accuracy`` (the removed
    classes) and ``remain_test_accuracy`` (the others);
  * ``forget_train_accuracy`` / ``remain_train_accuracy`` (the labels the
    model was trained on) and ``forget_train_loss``;
  * for outliers, ``noise_accuracy``: forget examples with their true labels;
  * ``mia_member_rate`` and ``mia_attack_accuracy`` (see
    :func:`membership_inference`) and ``mia_efficacy`` (SalUn's SVC attack,
    :func:`svc_mia_efficacy`), when ``mia`` is on. Non-members are the test
    examples (for class removal, those of the kept classes).

  Args:
    model: the classifier.
    task: the unlearning task.
    remain_all: indices of the WHOLE remain set (evaluation always uses the
      full D_r, even when a method sees only K of its examples).
    eval_limit: at most this many remain (and forget) training examples are
      evaluated, a fixed random subset, to bound the cost per epoch.
    test_limit: at most this many test examples (a fixed random subset); None: all.
    mia: run membership inference.
    seed: seed of the subsets.
  """

  def __init__(self, model: nn.Module, task: UnlearnTask, remain_all: np.ndarray, *,
               eval_limit: int | None = 10_000, mia: bool = True, seed: int = 0,
               test_limit: int | None = None):
    self.task = task
    self.predict = evaluation.make_predict_fn(model, task.mean, task.std, task.mesh)
    self.remain_idx = task.subsample(remain_all, eval_limit, seed)
    self.forget_pos = task.subsample(np.arange(len(task.forget)), eval_limit, seed + 1)
    self.forget_idx = task.forget[self.forget_pos]
    self.mia = mia
    self.seed = seed
    self.test_idx = task.subsample(np.arange(len(task.test_labels)), test_limit, seed + 2)
    whole = len(self.test_idx) == len(task.test_labels)   # no copy of the whole test set
    self.test_images = task.test_images if whole else task.test_images[self.test_idx]
    self.test_labels = task.test_labels if whole else task.test_labels[self.test_idx]
    if task.forget_classes is not None:
      self.test_forget = np.isin(self.test_labels, task.forget_classes)
    else:
      self.test_forget = None

  def logits(self, params: Any, model_state: Any, images: np.ndarray) -> np.ndarray:
    return evaluation.predict_all(self.predict, params, model_state, images)

  def __call__(self, params: Any, model_state: Any) -> dict:
    t = self.task
    test = self.logits(params, model_state, self.test_images)
    forget = self.logits(params, model_state, t.images[self.forget_idx])
    remain = self.logits(params, model_state, t.images[self.remain_idx])
    forget_y = t.labels[self.forget_idx]
    remain_y = t.labels[self.remain_idx]
    test_y = self.test_labels
    out: dict[str, Any] = {"test_accuracy": _accuracy(test, test_y)}
    if self.test_forget is not None:
      out["forget_test_accuracy"] = _accuracy(test[self.test_forget],
                                              test_y[self.test_forget])
      out["remain_test_accuracy"] = _accuracy(test[~self.test_forget],
                                              test_y[~self.test_forget])
    out["forget_train_accuracy"] = _accuracy(forget, forget_y)
    out["remain_train_accuracy"] = _accuracy(remain, remain_y)
    out["forget_train_loss"] = _mean_loss(forget, forget_y)
    if t.true_labels is not None:
      out["noise_accuracy"] = _accuracy(forget, t.true_labels[self.forget_pos])
    if self.mia:
      nonmember = (~self.test_forget) if self.test_forget is not None else slice(None)
      res = membership_inference(mia_features(remain, remain_y),
                                 mia_features(test[nonmember], test_y[nonmember]),
                                 mia_features(forget, forget_y), seed=self.seed)
      out["mia_member_rate"] = res["member_rate"]
      out["mia_attack_accuracy"] = res["attack_accuracy"]
      out["mia_efficacy"] = svc_mia_efficacy(
          _confidence(remain, remain_y), _confidence(test[nonmember], test_y[nonmember]),
          _confidence(forget, forget_y), seed=self.seed)
    return out

  def confidences(self, params: Any, model_state: Any) -> dict[str, np.ndarray]:
    """Per-example logit-scaled confidences (:func:`fmjax.privacy.logit_confidence`,
    float32) of the model on the evaluated D_f, the evaluated sample of D_r and the whole
    test set (or its ``test_limit`` sample), and their indices: ``forget``, ``remain``,
    ``test``, ``forget_index``, ``remain_index`` (training set), ``test_index``."""
    t = self.task
    out = {}
    views = (("forget", self.forget_idx), ("remain", self.remain_idx), ("test", None))
    for name, idx in views:
      images, labels = ((self.test_images, self.test_labels) if idx is None
                        else (t.images[idx], t.labels[idx]))
      logits = self.logits(params, model_state, images)
      out[name] = privacy.logit_confidence(logits, np.asarray(labels)).astype(np.float32)
    out["forget_index"] = np.asarray(self.forget_idx, np.int64)
    out["remain_index"] = np.asarray(self.remain_idx, np.int64)
    out["test_index"] = np.asarray(self.test_idx, np.int64)
    return out


PROTOCOL = ("UA", "RA", "TA", "MIA")


def protocol_readouts(record: dict, *, setting: str) -> dict:
  """The unlearning protocol's accuracies (SalUn; l1-sparse) from a readout record.

  * UA, unlearning accuracy: ``1 - accuracy on D_f`` (its training labels);
  * RA, remaining accuracy: accuracy on D_r (the evaluated subset);
  * TA, testing accuracy: test accuracy (for class removal, on the kept
    classes' test examples);
  * MIA: MIA-efficacy (:func:`svc_mia_efficacy`), None when MIA is off.

  The protocol's fifth number, RTE, is a wall time:
  :func:`fmjax.unlearning.run_time` of the run's records.
  """
  f = record.get("forget_train_accuracy")
  ta = record.get("remain_test_accuracy") if setting == "class" else record.get("test_accuracy")
  return {"UA": None if f is None else 1.0 - f, "RA": record.get("remain_train_accuracy"),
          "TA": ta, "MIA": record.get("mia_efficacy")}


def forget_loss(evaluator: Evaluator, params: Any, model_state: Any) -> float:
  """Mean loss of the model on the evaluated forget examples (their training labels)."""
  logits = evaluator.logits(params, model_state, evaluator.task.images[evaluator.forget_idx])
  return _mean_loss(logits, evaluator.task.labels[evaluator.forget_idx])


def relearn_time(evaluator: Evaluator, epoch_fn, state: Any, *, threshold: float,
                 max_epochs: int) -> dict:
  """Training on the forget set until its loss falls below ``threshold``.

  The readout of the paper's code: information that was only hidden comes
  back faster than information that is gone. ``epoch_fn(state, epoch) ->
  (state, metrics)`` trains one epoch on the forget set (metrics with
  ``'step_losses'``). Two counts: ``epochs``, after which the evaluated
  forget-set loss (inference mode) is below ``threshold``; and ``steps``, the
  optimiser steps until a training batch's loss first is. A forget set of
  one class is relearned within an epoch by any model (predicting that class
  everywhere is enough), so ``steps`` is the finer readout there.

  Returns:
    ``{'epochs': k or None (not within max_epochs), 'steps': s or None,
    'losses': [...], 'threshold': threshold}``; ``losses[0]`` is the loss
    before relearning.
  """
  if not (math.isfinite(threshold) and threshold > 0):
    raise ValueError(f"relearn threshold must be a positive loss, got {threshold!r}.")
  losses = [forget_loss(evaluator, state.params, state.model_state)]
  reached = 0 if losses[0] < threshold else None
  steps = 0 if reached == 0 else None
  epoch, done = 0, 0
  while (reached is None or steps is None) and epoch < max_epochs:
    epoch += 1
    state, metrics = epoch_fn(state, epoch)
    below = [i for i, x in enumerate(metrics["step_losses"]) if x < threshold]
    if steps is None and below:
      steps = done + below[0]
    done += len(metrics["step_losses"])
    losses.append(forget_loss(evaluator, state.params, state.model_state))
    if reached is None and losses[-1] < threshold:
      reached = epoch
  return {"epochs": reached, "steps": steps, "losses": losses, "threshold": threshold}
