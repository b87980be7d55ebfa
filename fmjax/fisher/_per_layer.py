"""Per-layer path: exact per-example squared gradients from layer inputs and
output gradients, without materialising per-example gradients of the network.

For a layer ``y = f(x; w)`` inside a model whose examples do not interact
(BatchNorm in inference mode), the gradient of example n's loss with respect to
``w`` is a function of the layer input ``x_n`` and of the gradient ``g_n`` of
the loss with respect to the layer output ``y_n``:

* Dense ``y = x W + b``: ``dW_n = x_n^T g_n``, so ``sum_n dW_n^2 = (x^2)^T (g^2)``
  and ``sum_n db_n^2 = sum_n g_n^2``.
* Conv (any number of spatial axes, strides, SAME/VALID/explicit padding): for
  each kernel tap t, ``dW_n[t] = sum_p x_n[p + t] g_n[p]^T``, one batched
  ``einsum('bpi,bpo->bio')`` over a strided slice of the padded input.
* BatchNorm (inference): ``dscale_n = sum_p g_n[p] * xhat_n[p]`` and
  ``dbias_n = sum_p g_n[p]`` with ``xhat`` from the running statistics.

The output gradients of every layer come from ONE backward pass of the summed
loss with respect to zero perturbations added to the layer outputs; the
parameters are constants there, so XLA computes no weight gradients at all.
The true Fisher needs the gradient for every class c weighted by p(c|x): the
backward pass is linear in the logit cotangent, so it is vmapped over K
cotangents ``sqrt(p_c) * (e_c)`` and the squares are summed over classes.

Layers are found by intercepting the ``__call__`` of ``flax.linen`` Conv, Dense
and BatchNorm modules (``nn.intercept_methods``). The path applies only when
every parameter belongs to exactly one such call; :func:`plan` says why not
otherwise, and the caller falls back to the reference path.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from fmjax.fisher._classes import class_chunked

_PARAM_NAMES = {nn.Conv: {"kernel", "bias"}, nn.Dense: {"kernel", "bias"},
                nn.BatchNorm: {"scale", "bias"}}


@dataclass(frozen=True)
class LayerCall:
  """What the probe saw of one intercepted layer call."""
  path: tuple[str, ...]
  kind: type
  input_shape: tuple[int, ...]
  output_shape: tuple[int, ...]
  unsupported: str | None  # why this call cannot use the per-layer formulas


@dataclass(frozen=True)
class Plan:
  """The per-layer plan for one (model, params structure, input shape)."""
  calls: tuple[LayerCall, ...]
  reason: str | None  # None: the per-layer path applies; else why not

  @property
  def ok(self) -> bool:
    return self.reason is None


def _conv_pads(module: nn.Conv, in_spatial, kernel_spatial, strides):
  """Explicit (lo, hi) pads of a Linen Conv, or None when unsupported."""
  padding = module.padding
  if isinstance(padding, str):
    if padding.upper() in ("SAME", "VALID"):
      return lax.padtype_to_pads(in_spatial, kernel_spatial, strides, padding.upper())
    return None  # CIRCULAR, CAUSAL, SAME_LOWER...
  if isinstance(padding, int):
    return [(padding, padding)] * len(kernel_spatial)
  pads = []
  for p in padding:
    if isinstance(p, int):
      pads.append((p, p))
    else:
      lo, hi = p
      pads.append((int(lo), int(hi)))
  return pads if len(pads) == len(kernel_spatial) else None


def _as_tuple(v, n):
  if v is None:
    return (1,) * n
  if isinstance(v, int):
    return (v,) * n
  return tuple(v)


def _conv_geometry(module: nn.Conv, x_shape):
  """(kernel_size, strides, pads) or a reason string when unsupported."""
  ks = tuple(module.kernel_size) if not isinstance(module.kernel_size, int) else (
      module.kernel_size,)
  n = len(ks)
  if len(x_shape) != n + 2:
    return f"input of rank {len(x_shape)} (expected batch + {n} spatial + channels)"
  if module.feature_group_count != 1:
    return "grouped convolution"
  if _as_tuple(module.kernel_dilation, n) != (1,) * n:
    return "kernel dilation"
  if _as_tuple(module.input_dilation, n) != (1,) * n:
    return "input dilation"
  if module.mask is not None:
    return "masked kernel"
  strides = _as_tuple(module.strides, n)
  pads = _conv_pads(module, x_shape[1:-1], ks, strides)
  if pads is None:
    return f"padding {module.padding!r}"
  return ks, strides, pads


def _bn_mode(module: nn.BatchNorm, args, kwargs) -> str | None:
  ura = kwargs.get("use_running_average", args[1] if len(args) > 1 else None)
  ura = nn.merge_param("use_running_average", module.use_running_average, ura)
  if not ura:
    return ("BatchNorm in training mode couples the examples of a batch; call the "
            "model in inference mode (e.g. apply_kwargs={'train': False})")
  if module.axis not in (-1,) or module.axis_name is not None:
    return f"BatchNorm over axis {module.axis}"
  if kwargs.get("mask") is not None:
    return "masked BatchNorm"
  return None


def instrumented_apply(model: nn.Module, variables: Mapping, images: jax.Array,
                       apply_kwargs: Mapping, perturbations: Mapping | None = None):
  """Applies ``model``, recording supported layers and adding perturbations.

  Returns:
    ``(logits, records, calls)``: records maps a layer path to what its
    per-layer formula needs (the input, or ``xhat`` for BatchNorm); calls lists
    every intercepted call in order (repeated paths mean shared weights).
  """
  records: dict[tuple[str, ...], jax.Array] = {}
  calls: list[tuple[tuple[str, ...], type, Any, Any, str | None]] = []

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    kind = type(module)
    if context.method_name != "__call__" or kind not in _PARAM_NAMES:
      return next_fun(*args, **kwargs)
    path = tuple(module.scope.path)
    x = args[0]
    why = _bn_mode(module, args, kwargs) if kind is nn.BatchNorm else None
    if why and "training mode" in why:
      raise ValueError(f"layer '{'/'.join(path)}': {why}.")
    y = next_fun(*args, **kwargs)
    if kind is nn.BatchNorm:
      if why is None:
        mean = module.get_variable("batch_stats", "mean")
        var = module.get_variable("batch_stats", "var")
        records[path] = (x - mean) * lax.rsqrt(var + module.epsilon)
    elif kind is nn.Conv:
      geo = _conv_geometry(module, x.shape)
      why = geo if isinstance(geo, str) else None
      records[path] = (x, geo)
    else:  # Dense
      if x.ndim != 2:
        why = f"Dense applied to an input of rank {x.ndim} (per-example formula needs [B, F])"
      records[path] = x
    calls.append((path, kind, x.shape, y.shape, why))
    if perturbations is not None and path in perturbations:
      y = y + perturbations[path].astype(y.dtype)
    return y

  with nn.intercept_methods(interceptor):
    logits = model.apply(variables, images, **apply_kwargs)
  return logits, records, calls


def plan(model: nn.Module, variables: Mapping, images_shape: jax.ShapeDtypeStruct,
         apply_kwargs: Mapping) -> Plan:
  """Traces ``model`` abstractly and decides if the per-layer path applies."""
  calls: list = []

  def probe(v, x):
    logits, _, c = instrumented_apply(model, v, x, apply_kwargs)
    calls.extend(c)
    return logits

  jax.eval_shape(probe, variables, images_shape)
  layer_calls = tuple(LayerCall(p, k, tuple(i), tuple(o), w) for p, k, i, o, w in calls)
  seen: dict[tuple[str, ...], LayerCall] = {}
  for call in layer_calls:
    if call.path in seen:
      return Plan(layer_calls, f"layer '{'/'.join(call.path)}' is called more than once "
                  "(shared weights)")
    if call.unsupported:
      return Plan(layer_calls, f"layer '{'/'.join(call.path)}': {call.unsupported}")
    seen[call.path] = call
  for key_path, _ in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
    names = tuple(str(getattr(k, "key", k)) for k in key_path)
    module_path, leaf = names[:-1], names[-1]
    call = seen.get(module_path)
    if call is None or leaf not in _PARAM_NAMES[call.kind]:
      return Plan(layer_calls, f"parameter '{'/'.join(names)}' is not the kernel, bias or "
                  "scale of a flax.linen Conv, Dense or BatchNorm layer")
  return Plan(layer_calls, None)


def _conv_kernel_sq(x, geo, g):
  """sum over (k, b) of the squared per-example kernel gradient.

  Args:
    x: layer input [B, *S_in, Cin].
    geo: (kernel_size, strides, pads).
    g: output gradients [K, B, *S_out, Cout].
  Returns:
    [*kernel_size, Cin, Cout].
  """
  ks, strides, pads = geo
  xp = jnp.pad(x, [(0, 0)] + list(pads) + [(0, 0)])
  out_spatial = g.shape[2:-1]
  taps = []
  for tap in itertools.product(*[range(k) for k in ks]):
    starts = (0,) + tap + (0,)
    limits = ((xp.shape[0],)
              + tuple(t + (o - 1) * s + 1 for t, o, s in zip(tap, out_spatial, strides,
                                                              strict=True))
              + (xp.shape[-1],))
    xs = lax.slice(xp, starts, limits, (1,) + tuple(strides) + (1,))
    xs = xs.reshape(xs.shape[0], -1, xs.shape[-1])             # [B, P, Cin]
    gs = g.reshape(g.shape[0], g.shape[1], -1, g.shape[-1])     # [K, B, P, Cout]
    per_example = jnp.einsum("bpi,kbpo->kbio", xs, gs)
    taps.append(jnp.square(per_example).sum(axis=(0, 1)))
  return jnp.stack(taps).reshape(tuple(ks) + taps[0].shape)


def sq_grad_sum(model: nn.Module, apply_kwargs: Mapping, variables: Mapping,
                images: jax.Array, labels: jax.Array, weights: jax.Array, *, kind: str,
                acc_dtype: Any) -> Any:
  """Same contract as ``_reference.sq_grad_sum``, for a model whose plan is ok."""
  params = variables["params"]
  shapes: dict[tuple[str, ...], Any] = {}

  def record_shapes(v, x):
    _, _, calls = instrumented_apply(model, v, x, apply_kwargs)
    for path, _, _, out_shape, _ in calls:
      shapes[path] = out_shape
    return 0

  jax.eval_shape(record_shapes, variables, images)
  # Zero perturbations on every layer output: their gradients are the output gradients.
  # (zeros_like of the images' first element keeps them per-example data: under shard_map
  # a constant would be replicated, and its gradient summed over devices.)
  like = jnp.zeros_like(images.reshape(-1)[0], acc_dtype)
  zeros = {p: jnp.zeros(s, acc_dtype) + like for p, s in shapes.items()}

  def log_probs_of(perts):
    logits, records, _ = instrumented_apply(model, variables, images, apply_kwargs, perts)
    return jax.nn.log_softmax(logits.astype(acc_dtype)), records

  log_probs, vjp_fn, records = jax.vjp(log_probs_of, zeros, has_aux=True)
  w = weights.astype(acc_dtype)
  num_classes = log_probs.shape[-1]

  def squares(cotangents):   # [k, B, K] -> {param path: sum of squares over k and B}
    (grads,) = jax.vmap(vjp_fn)(cotangents)                         # path -> [k, B, ...]
    return _layer_squares(params, records, grads, acc_dtype)

  if kind == "empirical":
    # sqrt(w): the gradients are squared, and a weight multiplies the example's square.
    flat = squares((jax.nn.one_hot(labels, num_classes, dtype=acc_dtype)
                    * jnp.sqrt(w)[:, None])[None])
  else:
    probs = lax.stop_gradient(jnp.exp(log_probs))                  # [B, K]
    scale = jnp.sqrt(probs * w[:, None])                            # [B, K]
    # Classes c [k] a step (fmjax.fisher._classes): cotangents sqrt(p_c w) e_c, [k, B, K].
    flat = class_chunked(lambda c: squares(jax.nn.one_hot(c, num_classes, dtype=acc_dtype)
                                           [:, None, :] * scale.T[c][:, :, None]),
                         num_classes)
  leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
  ordered = [flat[tuple(str(getattr(k, "key", k)) for k in kp)] for kp, _ in leaves_with_paths]
  return jax.tree_util.tree_unflatten(treedef, ordered)


def _layer_squares(params: Mapping, records: Mapping, grads: Mapping, acc_dtype: Any) -> dict:
  """Per parameter path, the sum over the leading two axes ([k, B]) of the squared
  per-example gradients, from each layer's recorded input and output gradients."""
  flat = {}
  for path, g in grads.items():
    g = g.astype(acc_dtype)
    rec = records[path]
    module_params = _subtree(params, path)
    reduce_axes = tuple(range(2, g.ndim - 1))  # spatial axes of [K, B, *S, C]
    if "kernel" in module_params and isinstance(rec, tuple):  # Conv
      x, geo = rec
      flat[path + ("kernel",)] = _conv_kernel_sq(x.astype(acc_dtype), geo, g)
    elif "kernel" in module_params:                             # Dense
      x = rec.astype(acc_dtype)
      flat[path + ("kernel",)] = jnp.einsum("bi,kbo->io", jnp.square(x), jnp.square(g))
    if "scale" in module_params:                                # BatchNorm
      xhat = rec.astype(acc_dtype)
      flat[path + ("scale",)] = jnp.square((g * xhat[None]).sum(axis=reduce_axes)).sum((0, 1))
    if "bias" in module_params:
      flat[path + ("bias",)] = jnp.square(g.sum(axis=reduce_axes)).sum(axis=(0, 1))
  return flat


def _subtree(params: Mapping, path: tuple[str, ...]) -> Mapping:
  node = params
  for name in path:
    node = node[name]
  return node
