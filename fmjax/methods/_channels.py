"""Channel-level activations, integrated gradients and channel masks.

A *channel* is one output channel of a ``flax.linen.Conv`` layer. Its
activation, for the channel-level baselines:

* ``where='post'`` -- the output of the BatchNorm that normalises the conv's
  output (Conv-BN, the paper's Section 3.2 "Conv-BatchNorm-ReLU"); ReLU is
  applied by the caller. A BatchNorm consumes a conv's output when its input
  IS that output (same traced array); when no BatchNorm does (e.g. DenseNet's
  BN-ReLU-Conv order, or a conv without BN), the conv output itself is used.
* ``where='pre'`` -- the conv output before BatchNorm (TF-IDF, Wang et al.).

Masking a channel zeroes its kernel parameters, ``kernel[..., j]`` (every
input tap of output channel j), and its bias entry when the conv has one. The
mask ratio R counts parameters, as FisherMask's, and like FisherMask's it is
a fraction of the parameters the method may mask (:func:`fmjax.masks.
top_fraction_mask` counts eligible entries): channels are taken in descending
score order until their parameters number at least ``round(R * n)``, n the
number of conv kernel (and bias) parameters, so the masked fraction of them
exceeds R by less than one channel's parameters. In the paper's networks
convolutions hold nearly every parameter (ResNet20: 99.5%), so n is almost
the model's size; in a network whose parameters sit mostly in Dense layers
(the small CNN: 4%), counting the whole model would zero nearly every
channel.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fmjax import _checks, _compiled, masks
from fmjax.task import Edit

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ChannelLayer:
  """One conv layer's channels.

  Attributes:
    conv: module path of the Conv (its params live at ``params[conv...]``).
    bn: module path of the BatchNorm that consumes its output, or None.
    channels: number of output channels.
    params_per_channel: kernel (and bias) parameters of one output channel.
  """
  conv: Path
  bn: Path | None
  channels: int
  params_per_channel: int


def _apply(model: nn.Module, variables: Mapping, images: jax.Array, apply_kwargs: Mapping, *,
           where: str, edits: Mapping[Path, tuple[str, jax.Array, jax.Array]] | None = None):
  """Applies the model, recording each conv channel's activation [B, ..., C] at ``where``.

  ``edits = {conv_path: (at, scale, delta)}`` replaces each named layer's activation ``a``
  at ``at`` ('pre' or 'post', see the module docstring) by ``scale * a + delta`` in the
  forward pass (integrated gradients). Returns ``(logits, activations by conv path,
  layers)``.
  """
  conv_out: dict[int, Path] = {}      # id(conv output array) -> conv path
  acts: dict[Path, jax.Array] = {}
  bn_of: dict[Path, Path] = {}
  shapes: dict[Path, tuple[int, int]] = {}
  edits = edits or {}

  def maybe_edit(path, y, at):
    if path in edits and edits[path][0] == at:
      _, scale, delta = edits[path]
      return scale.astype(y.dtype) * y + delta.astype(y.dtype)
    return y

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, nn.Conv | nn.BatchNorm):
      return next_fun(*args, **kwargs)
    path = tuple(module.scope.path)
    x = args[0]
    y = next_fun(*args, **kwargs)
    if isinstance(module, nn.Conv):
      if path in shapes:
        raise ValueError(f"conv layer '{'/'.join(path)}' is called more than once (shared "
                         "weights); channel scores need one call per layer.")
      kernel = module.get_variable("params", "kernel")
      bias = module.has_variable("params", "bias")
      shapes[path] = (int(y.shape[-1]), int(np.prod(kernel.shape[:-1])) + int(bias))
      acts[path] = y
      y = maybe_edit(path, y, "pre")
      conv_out[id(y)] = path
      return y
    owner = conv_out.pop(id(x), None)
    if owner is not None and owner not in bn_of:
      bn_of[owner] = path
      if where == "post":
        acts[owner] = y
      y = maybe_edit(owner, y, "post")
    return y

  with nn.intercept_methods(interceptor):
    logits = model.apply(variables, images, **apply_kwargs)
  unedited = [p for p, (at, _, _) in edits.items() if at == "post" and p not in bn_of]
  if unedited:
    raise ValueError(f"conv layer '{'/'.join(unedited[0])}' has no BatchNorm after it; its "
                     "post-BN activation cannot be edited.")
  layers = tuple(ChannelLayer(p, bn_of.get(p), c, k) for p, (c, k) in shapes.items())
  return logits, acts, layers


def channel_layers(model: nn.Module, variables: Mapping, image_shape: tuple[int, ...],
                   apply_kwargs: Mapping) -> tuple[ChannelLayer, ...]:
  """The conv layers of ``model`` in call order, found by an abstract trace."""
  out: list = []

  def probe(v, x):
    logits, _, layers = _apply(model, v, x, apply_kwargs, where="post")
    out.extend(layers)
    return logits

  jax.eval_shape(probe, variables, jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32))
  if not out:
    raise ValueError(f"{type(model).__name__} has no flax.linen Conv layer; channel-level "
                     "methods (activation_mask, grad_mask, tfidf) need convolutional channels.")
  return tuple(out)


def make_channel_means(model: nn.Module, apply_kwargs: Mapping, *, where: str) -> Callable:
  """Jitted ``f(variables, images [B, ...]) -> {conv path: [B, C]}``: the
  spatial mean of ``relu(activation)`` per example and channel."""
  if where not in ("pre", "post"):
    raise ValueError(f"where must be 'pre' or 'post', got {where!r}.")

  def f(variables, images):
    _, acts, _ = _apply(model, variables, images, apply_kwargs, where=where)
    return {"/".join(p): jnp.mean(jax.nn.relu(a.astype(jnp.float32)),
                                  axis=tuple(range(1, a.ndim - 1)))
            for p, a in acts.items()}

  key = ("channel_means", model, tuple(sorted(apply_kwargs.items())), where)
  return _compiled.compiled(key, lambda: jax.jit(f))


def make_integrated_gradients(model: nn.Module, apply_kwargs: Mapping,
                              layers: tuple[ChannelLayer, ...], steps: int) -> Callable:
  """Jitted ``f(variables, images, labels) -> {conv path: [B, C]}``: integrated
  gradients of each example's loss with respect to the channels of every layer in
  ``layers``, ONE compiled program for all of them.

  ``B[i, j] = sum_p a[i, p, j] * (1/m) sum_{k=1..m} dL_i/da[i, p, j] at (k/m) a``,
  the right Riemann sum with ``m = steps`` (Sundararajan et al. 2017, Eq. 3),
  summed over the channel's positions p; ``a`` is the layer's 'post'
  activation (see the module docstring) and only that layer is scaled (each layer's
  attribution is its own integral: a step scales one layer at a time).
  By completeness, ``sum_j B[i, j]`` tends to ``L_i(a) - L_i(0)`` as m grows.

  The program holds ONE copy of the network: every layer of ``layers`` carries a scale
  and a zero perturbation, ``s_l * a_l + delta_l``, and a loop over (layer, step) pairs
  sets ``s = k/m`` at its layer and 1 elsewhere, takes one backward pass to the
  perturbations and adds ``sum_p a * dL/d delta`` of its layer. Its memory is one
  forward and backward pass whatever the number of layers (a program with one pass per
  layer kept them all: 304 GB for GoogLeNet, ``make bench-memory``), and its compile
  time does not grow with them either.
  """
  if steps < 1:
    raise ValueError(f"integrated-gradient steps must be >= 1, got {steps}.")
  layers = tuple(layers)
  at = {layer.conv: "post" if layer.bn is not None else "pre" for layer in layers}

  def loss_at(deltas, scales, variables, images, labels):
    edits = {p: (at[p], scales[i], deltas[p]) for i, p in enumerate(at)}
    logits, _, _ = _apply(model, variables, images, apply_kwargs, where="post", edits=edits)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.sum(jnp.take_along_axis(logp, labels[:, None], axis=1))

  def f(variables, images, labels):
    acts = {}
    for where in set(at.values()):
      _, seen, _ = _apply(model, variables, images, apply_kwargs, where=where)
      acts.update({p: seen[p] for p in at if at[p] == where})
    zeros = {p: jnp.zeros_like(a) for p, a in acts.items()}
    grad = jax.grad(loss_at)

    def body(t, totals):   # pair t: layer t // m at step t % m
      layer, alpha = t // steps, (t % steps + 1.0) / steps
      scales = jnp.where(jnp.arange(len(at)) == layer, alpha, 1.0)
      g = grad(zeros, scales, variables, images, labels)
      return {p: totals[p] + jnp.where(i == layer, _channel_sums(acts[p], g[p]), 0.0)
              for i, p in enumerate(at)}

    totals = jax.lax.fori_loop(0, len(at) * steps, body, {
        p: jnp.zeros((a.shape[0], a.shape[-1]), jnp.float32) for p, a in acts.items()})
    return {"/".join(p): totals[p] / steps for p in at}

  key = ("integrated_gradients", model, tuple(sorted(apply_kwargs.items())), layers, steps)
  return _compiled.compiled(key, lambda: jax.jit(f))


def _channel_sums(a: jax.Array, g: jax.Array) -> jax.Array:
  """``sum_p a * g`` over the positions of [B, ..., C] activations: [B, C] in float32."""
  prod = a.astype(jnp.float32) * g.astype(jnp.float32)
  return jnp.sum(prod, axis=tuple(range(1, a.ndim - 1)))


def channel_mask(params: Any, layers: tuple[ChannelLayer, ...], scores: Mapping[str, Any],
                 ratio: float) -> tuple[Any, dict]:
  """Masks the kernel (and bias) parameters of the top-scoring channels.

  Args:
    params: the model parameters.
    layers: from :func:`channel_layers`.
    scores: ``{'conv/path': [C]}`` per layer (higher = mask first).
    ratio: R in (0, 1], counted in parameters of the whole model.

  Returns:
    ``(mask, info)``: a boolean pytree shaped like ``params`` and
    ``{'channels': k, 'target_params': t, 'masked_params': m}``.
  """
  ratio = _checks.check_ratio(ratio)
  total = sum(layer.channels * layer.params_per_channel for layer in layers)
  target = int(round(ratio * total))
  entries = []   # (score, layer index, channel)
  for li, layer in enumerate(layers):
    s = np.asarray(scores["/".join(layer.conv)], np.float64)
    if s.shape != (layer.channels,):
      raise ValueError(f"scores for '{'/'.join(layer.conv)}' have shape {s.shape}, expected "
                       f"({layer.channels},).")
    if not np.all(np.isfinite(s)):
      raise ValueError(f"channel scores of '{'/'.join(layer.conv)}' hold NaN or Inf.")
    entries.extend((-v, li, j) for j, v in enumerate(s))
  entries.sort()   # descending score; ties: earlier layer, lower channel first
  chosen: dict[int, list[int]] = {}
  count = 0
  n_channels = 0
  for _, li, j in entries:
    if count >= target:
      break
    chosen.setdefault(li, []).append(j)
    count += layers[li].params_per_channel
    n_channels += 1
  mask = jax.tree.map(lambda x: np.zeros(np.shape(x), bool), params)
  for li, js in chosen.items():
    node = mask
    for name in layers[li].conv:
      node = node[name]
    kernel = node["kernel"].copy()
    kernel[..., js] = True
    node["kernel"] = kernel
    if "bias" in node:
      bias = node["bias"].copy()
      bias[js] = True
      node["bias"] = bias
  mask = jax.tree.map(jnp.asarray, mask)
  return mask, {"channels": n_channels, "target_params": target, "masked_params": count}


def masked_channels_edit(model: nn.Module, params: Any, model_state: Any, image_shape,
                         scores: Mapping[str, Any], ratio: float, seconds: dict):
  """The Edit of a channel-level method: mask the top channels' kernels.

  ``seconds`` holds the scoring time; the masking time is added.
  """
  start = time.perf_counter()
  layers = channel_layers(model, {"params": params, **model_state}, image_shape,
                          {"train": False})
  mask, info = channel_mask(params, layers, scores, ratio)
  new = masks.apply_mask(params, mask)
  jax.block_until_ready(new)
  return Edit(new, model_state, mask, info, {**seconds, "mask": time.perf_counter() - start})


def classifier_path(model: nn.Module, variables: Mapping, image_shape: tuple[int, ...],
                    apply_kwargs: Mapping) -> Path:
  """Module path of the Dense layer whose output IS the model's logits."""
  outputs: dict[int, Path] = {}
  found: list[Path] = []

  def interceptor(next_fun, args, kwargs, context):
    y = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and isinstance(context.module, nn.Dense):
      outputs[id(y)] = tuple(context.module.scope.path)
      keep.append(y)
    return y

  keep: list = []

  def probe(v, x):
    with nn.intercept_methods(interceptor):
      logits = model.apply(v, x, **apply_kwargs)
    if id(logits) in outputs:
      found.append(outputs[id(logits)])
    return logits

  jax.eval_shape(probe, variables, jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32))
  if not found:
    raise ValueError(f"{type(model).__name__} does not end in a flax.linen Dense layer whose "
                     "output is the logits; FisherNoise needs to know its classifier layer.")
  return found[0]
