"""The unlearning methods, one module each, and their registry.

A method is a frozen dataclass, a subclass of :class:`Method`
(:mod:`fmjax.methods.base`): its fields are its hyper-parameters AND its
training recipe (epochs, rate, batch, momentum, weight decay, at its authors'
published values), its class attributes what it can serve, and it implements

    method.edit(model, params, model_state, task, key) -> Edit
    method.procedure(task, budget) -> Procedure

The training loop and evaluation are NOT part of a method: :mod:`fmjax.run`
runs its procedure (for :class:`FineTuned` methods the paper's shared
fine-tuning) through the one :class:`fmjax.runner.Runner`, with the same
batching, checkpoints, resume, readouts and timings. A new method is one
module with one ``@register`` class, in fmjax or in your own package.

=================  ===========================================================
``retrain``        from scratch on D_r, original schedule (the reference)
``finetune``       no edit; fine-tune on D_r
``random_mask``    zero a random R fraction of parameters
``activation_mask`` zero the channels most active on D_f relative to D_r
``grad_mask``      zero the channels with the largest integrated gradients on D_f
``fisher_mask``    zero the top R of F_f - F_r (the paper's method)
``tfidf``          Wang et al.'s class-discriminative channel pruning
``influence``      one Newton step with an iterative inverse-Hessian solve
``fisher_noise``   Golatkar et al.'s Fisher noise (no fine-tuning by default)
``ssd``            Selective Synaptic Dampening (no training)
``random_label``   D_f with random wrong labels, then D_r
``salun``          random labels on the most salient weights only
``scrub``          SCRUB's max/min teacher-student steps
``l1_sparse``      fine-tuning with a decaying l1 penalty
``neggrad_plus``   descent on D_r, ascent on D_f
=================  ===========================================================
"""

from __future__ import annotations

# Registration order is the order tables list the methods in (so not isort's).
# ruff: noqa: I001
from fmjax.methods.retrain import Retrain, retrain
from fmjax.methods.finetune import Finetune
from fmjax.methods.random_mask import RandomMask, random_mask
from fmjax.methods.activation_mask import ActivationMask, activation_mask
from fmjax.methods.grad_mask import GradMask, grad_mask
from fmjax.methods.fisher_mask import FisherMask, fisher_mask
from fmjax.methods.tfidf import TFIDF, tfidf
from fmjax.methods.influence import Influence, influence
from fmjax.methods.fisher_noise import FisherNoise, fisher_noise
from fmjax.methods.ssd import SSD, ssd
from fmjax.methods.random_label import RandomLabel
from fmjax.methods.salun import SalUn, salun
from fmjax.methods.scrub import SCRUB
from fmjax.methods.l1_sparse import L1Sparse
from fmjax.methods.neggrad_plus import NegGradPlus
from fmjax.methods.base import (ENTRY_POINT_GROUP, REMAIN_OPTIONAL, REMAIN_REQUIRED,
                                FineTuned, FisherScoring, MaskMethod, Method, Scoring,
                                default_ratio, defaults, field_names, fill_none, from_json,
                                get_method, import_methods, make, register, registry, tagged)
from fmjax.procedures import Budget, Procedure
from fmjax.task import Edit, UnlearnTask

__all__ = ["ENTRY_POINT_GROUP", "REMAIN_OPTIONAL", "REMAIN_REQUIRED", "SCRUB", "SSD", "TFIDF",
           "ActivationMask", "Budget", "Edit", "FineTuned", "Finetune", "FisherMask", "FisherNoise",
           "FisherScoring", "GradMask", "Influence", "L1Sparse", "MaskMethod", "Method",
           "NegGradPlus", "Procedure", "RandomLabel", "RandomMask", "Retrain", "SalUn", "Scoring",
           "UnlearnTask", "activation_mask", "default_ratio", "defaults", "field_names",
           "fill_none", "fisher_mask", "fisher_noise", "from_json", "get_method", "grad_mask",
           "import_methods", "influence", "make", "random_mask", "register", "registry", "retrain",
           "salun", "ssd", "tagged", "tfidf"]
