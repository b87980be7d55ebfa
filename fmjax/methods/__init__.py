"""The unlearning methods, one module each, and their registry.

Every method is a pure function

    method(model, params, model_state, task, settings, key) -> Edit

from the trained weights, the data views (:class:`UnlearnTask`), the
hyper-parameters (:class:`MethodSettings`) and a PRNG key to the edited
weights (:class:`Edit`). Fine-tuning and evaluation are NOT part of a method:
:mod:`fmjax.unlearning` runs the same fine-tuning routine
(:mod:`fmjax.finetuning`) and the same readouts (:mod:`fmjax.readouts`) after
every method. A new method (e.g. Selective Synaptic Dampening, SalUn) is one
module with such a function and one :class:`Method` entry in ``METHODS``.

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
from fmjax.methods.random_mask import random_mask
from fmjax.methods.retrain import retrain
from fmjax.methods.tfidf import tfidf
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
    classes_only: it can only remove whole classes (not outliers).
    finetune_epochs: default fine-tuning epochs T; None = the original
      training's epochs (Retrain).
    schedule: fine-tuning learning rate: 'compressed' or 'original'.
    masks: it zeroes parameters (so ``freeze_mask`` applies).
  """
  name: str
  fn: Callable[..., Edit]
  remain: str
  classes_only: bool = False
  finetune_epochs: int | None = 30
  schedule: str = "compressed"
  masks: bool = False


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("retrain", retrain, REMAIN_REQUIRED, finetune_epochs=None, schedule="original"),
    Method("finetune", finetune, REMAIN_REQUIRED),
    Method("random_mask", random_mask, REMAIN_OPTIONAL, masks=True),
    Method("fisher_mask", fisher_mask, REMAIN_OPTIONAL, masks=True),
    Method("activation_mask", activation_mask, REMAIN_OPTIONAL, masks=True),
    Method("grad_mask", grad_mask, REMAIN_OPTIONAL, masks=True),
    Method("fisher_noise", fisher_noise, REMAIN_REQUIRED, classes_only=False,
           finetune_epochs=0),
    Method("tfidf", tfidf, REMAIN_REQUIRED, classes_only=True, masks=True),
    Method("influence", influence, REMAIN_REQUIRED, finetune_epochs=0),
)}


def get_method(name: str) -> Method:
  """The method called ``name``; a ValueError lists the valid names."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}.")
  return METHODS[name]


__all__ = ["METHODS", "Edit", "Method", "MethodSettings", "UnlearnTask", "activation_mask",
           "finetune", "fisher_mask", "fisher_noise", "get_method", "grad_mask", "influence",
           "random_mask", "retrain", "tfidf"]
