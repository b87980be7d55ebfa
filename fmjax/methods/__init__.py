"""The unlearning methods, one module each, and their registry.

Every method is a pure function

    method(model, params, model_state, task, settings, key) -> Edit

from the trained weights, the data views (:class:`UnlearnTask`), the
hyper-parameters (:class:`MethodSettings`) and a PRNG key to the edited
weights (:class:`Edit`). A method that is a training procedure (SalUn, SCRUB,
...) also names a pure ``procedure(task, settings, budget) -> Procedure``
(:mod:`fmjax.procedures`): its objectives over remain and forget batches, a
teacher where it needs one, and its epochs and learning rate; its edit may
freeze weights (``Edit.freeze``). The training loop and evaluation are NOT
part of a method: :mod:`fmjax.unlearning` runs either the paper's shared
fine-tuning (:func:`fmjax.finetuning.finetune_procedure`) or the method's
procedure through the one :class:`fmjax.runner.Runner`, with the same
batching, checkpoints, resume, readouts (:mod:`fmjax.readouts`) and timings. A new
method is one module and one :class:`Method` entry in ``METHODS``.

=================  ===========================================================
``retrain``        from scratch on D_r, original schedule (the reference)
``finetune``       no edit; fine-tune on D_r
``random_mask``    zero a random R fraction of parameters
``fisher_mask``    zero the top R of F_f - F_r (the paper's method)
``activation_mask`` zero the channels most active on D_f relative to D_r
``grad_mask``      zero the channels with the largest integrated gradients on D_f
``fisher_noise``   Golatkar et al.'s Fisher noise (no fine-tuning by default)
``tfidf``          Wang et al.'s class-discriminative channel pruning
``influence``      one Newton step with an iterative inverse-Hessian solve
``ssd``            Selective Synaptic Dampening (no training)
``salun``          random labels on the most salient weights only
``scrub``          SCRUB's max/min teacher-student steps
``l1_sparse``      fine-tuning with a decaying l1 penalty
``neggrad_plus``   descent on D_r, ascent on D_f
``random_label``   D_f with random wrong labels, then D_r
=================  ===========================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fmjax.methods.activation_mask import activation_mask
from fmjax.methods.finetune import finetune
from fmjax.methods.fisher_mask import fisher_mask
from fmjax.methods.fisher_noise import fisher_noise
from fmjax.methods.grad_mask import grad_mask
from fmjax.methods.influence import influence
from fmjax.methods.l1_sparse import l1_sparse, l1_sparse_procedure
from fmjax.methods.neggrad_plus import neggrad_plus, neggrad_plus_procedure
from fmjax.methods.random_label import random_label, random_label_procedure
from fmjax.methods.random_mask import random_mask
from fmjax.methods.retrain import retrain
from fmjax.methods.salun import salun, salun_procedure
from fmjax.methods.scrub import scrub, scrub_procedure
from fmjax.methods.ssd import ssd
from fmjax.methods.tfidf import tfidf
from fmjax.procedures import Budget, Procedure
from fmjax.task import Edit, MethodSettings, UnlearnTask

REMAIN_REQUIRED, REMAIN_OPTIONAL = "required", "optional"


@dataclasses.dataclass(frozen=True)
class Method:
  """A method and what it can serve.

  Attributes:
    name: its one name.
    fn: the pure edit function.
    remain: whether its EDIT needs remain data ('required') or can score
      from the forget set alone ('optional'). Fine-tuning always needs it.
    classes_only: it can only remove whole classes (not outliers or random
      subsets).
    epochs: default epochs T of its training (the shared fine-tuning, or its
      own procedure); 0 = it does not train; None = the original training's
      epochs (Retrain).
    schedule: fine-tuning learning rate: 'compressed' or 'original'.
    masks: it zeroes parameters (so ``freeze_mask`` applies).
    procedure: its own training ``procedure(task, settings, budget)``, or
      None for the shared fine-tuning.
    lr: the procedure's default (published) constant learning rate.
    family: 'paper' (the paper and its baselines) or 'successor'.
  """
  name: str
  fn: Callable[..., Edit]
  remain: str
  classes_only: bool = False
  epochs: int | None = 30
  schedule: str = "compressed"
  masks: bool = False
  procedure: Callable[[UnlearnTask, MethodSettings, Budget], Procedure] | None = None
  lr: float | None = None
  family: str = "paper"

  @property
  def trains(self) -> bool:
    """Whether it trains after its edit by default (FisherNoise, influence and SSD do not)."""
    return self.epochs != 0


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("retrain", retrain, REMAIN_REQUIRED, epochs=None, schedule="original"),
    Method("finetune", finetune, REMAIN_REQUIRED),
    Method("random_mask", random_mask, REMAIN_OPTIONAL, masks=True),
    Method("fisher_mask", fisher_mask, REMAIN_OPTIONAL, masks=True),
    Method("activation_mask", activation_mask, REMAIN_OPTIONAL, masks=True),
    Method("grad_mask", grad_mask, REMAIN_OPTIONAL, masks=True),
    Method("fisher_noise", fisher_noise, REMAIN_REQUIRED, classes_only=False,
           epochs=0),
    Method("tfidf", tfidf, REMAIN_REQUIRED, classes_only=True, masks=True),
    Method("influence", influence, REMAIN_REQUIRED, epochs=0),
    Method("ssd", ssd, REMAIN_REQUIRED, epochs=0, family="successor"),
    Method("salun", salun, REMAIN_REQUIRED, epochs=10, procedure=salun_procedure,
           lr=0.1, family="successor"),
    Method("scrub", scrub, REMAIN_REQUIRED, epochs=3, procedure=scrub_procedure,
           lr=5e-4, family="successor"),
    Method("l1_sparse", l1_sparse, REMAIN_REQUIRED, epochs=10,
           procedure=l1_sparse_procedure, lr=0.01, family="successor"),
    Method("neggrad_plus", neggrad_plus, REMAIN_REQUIRED, epochs=5,
           procedure=neggrad_plus_procedure, lr=0.01, family="successor"),
    Method("random_label", random_label, REMAIN_REQUIRED, epochs=10,
           procedure=random_label_procedure, lr=0.1, family="successor"),
)}


def get_method(name: str) -> Method:
  """The method called ``name``; a ValueError lists the valid names."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}.")
  return METHODS[name]


__all__ = ["METHODS", "Budget", "Edit", "Method", "MethodSettings", "Procedure", "UnlearnTask",
           "activation_mask", "finetune", "fisher_mask", "fisher_noise", "get_method",
           "grad_mask", "influence", "l1_sparse", "neggrad_plus", "random_label",
           "random_mask", "retrain", "salun", "scrub", "ssd", "tfidf"]
