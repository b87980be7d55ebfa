"""What a method is: one frozen dataclass that owns its hyper-parameters and its recipe.

Every unlearning method is a subclass of :class:`Method`. Its instance fields are
ALL its settings: the hyper-parameters of its edit and the recipe of the training
that follows (epochs, learning rate, batch size, momentum, weight decay, with the
defaults its authors publish); its class attributes say what it can serve. It
implements one interface::

    method.edit(model, params, model_state, task, key) -> Edit
    method.procedure(task, budget) -> Procedure

``edit`` is pure: the trained weights, the data views
(:class:`fmjax.task.UnlearnTask`) and a PRNG key in, the edited weights
(:class:`fmjax.task.Edit`) out; the default is no edit. ``procedure`` is the
training that follows, as data (:mod:`fmjax.procedures`) at the ``budget`` the run
resolved from the recipe. :class:`FineTuned` methods (the paper's) train with the
paper's shared fine-tuning on D_r; a method with its own training (SalUn, SCRUB,
...) derives :class:`Method` and writes its stages. The runner, checkpoints,
readouts and stacking are the same for every method (:mod:`fmjax.run`).

A method of your own is one file in your package (the README's "A method of your
own" shows a whole one, which ``tests/test_extension.py`` runs)::

    @fmjax.methods.register
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class GradientAscent(fmjax.methods.Method):
      \"\"\"Ascend the forget loss.

      Attributes:
        scale: the weight of the ascended loss.
      \"\"\"
      name: ClassVar[str] = "gradient_ascent"
      remain: ClassVar[str] = fmjax.methods.REMAIN_OPTIONAL
      epochs: int | None = 2
      lr: float = 0.005
      scale: float = 1.0

      def procedure(self, task, budget):
        return budget.procedure((Stage(Ascent(self.scale), "forget", budget.batch_size),))

Its fields become ``--lr``, ``--scale`` ... of ``python -m fmjax unlearn --method
gradient_ascent`` (help from the ``Attributes:`` section), ``--set unlearn.scale=2``
of the experiments, and ``{"method": {"name": "gradient_ascent", ...}}`` in the
run's ``config.json``. The command line finds it through ``--import MODULE`` or an
installed package's entry point in the group ``fmjax.methods``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import typing
from typing import Any, ClassVar, Literal

from fmjax import _checks, _fields, data, finetuning
from fmjax.procedures import Budget, Procedure
from fmjax.task import Edit, UnlearnTask

REMAIN_REQUIRED, REMAIN_OPTIONAL = "required", "optional"
ENTRY_POINT_GROUP = "fmjax.methods"

# The registry: name -> class, in registration order (the order tables list methods in).
_REGISTRY: dict[str, type[Method]] = {}
_PLUGINS_LOADED = [False]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Method:
  """An unlearning method: its settings are its fields, its facts its class attributes.

  Class attributes:
    name: its one name (the registry key, ``--method NAME``).
    remain: whether its EDIT needs remain data (REMAIN_REQUIRED) or can score
      from the forget set alone (REMAIN_OPTIONAL). Whether its TRAINING needs it
      is read from its procedure's streams.
    classes_only: it can only remove whole classes.
    masks: its edit zeroes parameters (so ``freeze_mask`` applies).
    tags: how experiments select it ('paper', 'successor', 'reference', ...).
    limits: ``{field: rule}`` checks of its own fields (:func:`fmjax._checks.check_fields`);
      a subclass's rules add to its bases'.

  Attributes:
    epochs: epochs T of its training (0: the edit alone; None: the original
      training's epochs).
    lr: its training's constant learning rate.
    batch_size: its training's batch (None: the original training's batch).
    momentum: SGD momentum of its training (None: the original training's).
    weight_decay: SGD weight decay of its training, coupled (None: the original
      training's).
  """
  name: ClassVar[str] = ""
  remain: ClassVar[str] = REMAIN_REQUIRED
  classes_only: ClassVar[bool] = False
  masks: ClassVar[bool] = False
  tags: ClassVar[tuple[str, ...]] = ()
  limits: ClassVar[dict[str, str]] = {}

  epochs: int | None = 30
  lr: float = 0.01
  batch_size: int | None = None
  momentum: float | None = None
  weight_decay: float | None = None

  def __post_init__(self):
    rules = {"epochs": ">=0", "batch_size": ">=1", "momentum": "[0,1]", "weight_decay": ">=0"}
    if not isinstance(self.lr, str):
      rules["lr"] = ">0"
    for cls in reversed(type(self).__mro__):
      rules.update(vars(cls).get("limits", {}))
    try:
      _checks.check_fields(self, rules)
    except ValueError as e:
      raise ValueError(f"{self.name}: {e}") from None
    check_choices(self)

  def for_data(self, info: data.DatasetInfo) -> Method:
    """This method with the settings it leaves to the data filled in for the dataset
    ``info`` (``fmjax.data.DATASETS[name]``: its family, image shape, classes).

    A field whose default depends on the data defaults to None, and the class that owns
    it overrides this hook: ``return fill_none(super().for_data(info), field=value)``
    fills its own fields that are still None (a value the user gave is kept). The run calls it once,
    when it makes its config (:func:`fmjax.unlearning.make_config`), so ``config.json``
    records the values the run used. The default fills nothing."""
    return _for_data_after(super(), self, info)

  @property
  def trains(self) -> bool:
    """Whether it trains after its edit (FisherNoise, influence and SSD do not by default)."""
    return self.epochs != 0

  def edit(self, model, params, model_state, task: UnlearnTask, key) -> Edit:
    """The edit before training; by default none (the trained model as it is)."""
    del model, task, key
    return Edit(params, model_state, None, {}, {})

  def procedure(self, task: UnlearnTask, budget: Budget) -> Procedure:
    """The training after the edit, at ``budget`` (the recipe, resolved by the run)."""
    raise NotImplementedError(f"{type(self).__name__} ({self.name!r}) names no procedure: "
                              "derive FineTuned for the shared fine-tuning on D_r, or "
                              "write its stages (fmjax.procedures).")

  def to_json(self) -> dict:
    """``{'name': ..., field: value, ...}`` as ``config.json`` records it."""
    return {"name": self.name, **dataclasses.asdict(self)}


def fill_none(method: Method, **values: Any) -> Method:
  """``method`` with each field of ``values`` that is still None set to its value (a value
  the user gave is kept): what a :meth:`Method.for_data` override returns."""
  fill = {k: v for k, v in values.items() if getattr(method, k) is None}
  return dataclasses.replace(method, **fill) if fill else method


def _for_data_after(later: Any, method: Method, info: data.DatasetInfo) -> Method:
  """``for_data`` of the next class in ``method``'s MRO that has one (``later`` is that
  class's ``super()``), or ``method`` as it is when none does: it hands a settings mixin
  placed after :class:`Method` (SSD's ``FisherScoring``) its turn."""
  after = getattr(later, "for_data", None)
  return after(info) if after is not None else method


@dataclasses.dataclass(frozen=True, kw_only=True)
class FineTuned(Method):
  """A method whose edit the paper's shared fine-tuning on D_r follows.

  Attributes:
    lr: 'compressed' (the paper: the original schedule replayed in
      ``compress_epochs`` epochs, then its last rate), 'original' (the original
      schedule as it was; Retrain's), or a constant rate (the ablation).
    compress_epochs: S, the epochs the original schedule is compressed into.
  """
  lr: Literal["compressed", "original"] | float = "compressed"
  compress_epochs: float = 5.0
  limits: ClassVar[dict[str, str]] = {"compress_epochs": ">0"}

  def procedure(self, task: UnlearnTask, budget: Budget) -> Procedure:
    """Cross-entropy on D_r at the budget's rate (a schedule or a constant)."""
    del task
    return finetuning.finetune_procedure(budget.lr, batch_size=budget.batch_size,
                                         momentum=budget.momentum,
                                         weight_decay=budget.weight_decay)


def default_ratio(dataset: str) -> float:
  """The paper's mask ratio: 0.02 on CIFAR-10/100, 0.04 on MNIST-like data and Tiny-ImageNet."""
  return 0.02 if data.DATASETS[dataset].family == "cifar" else 0.04


@dataclasses.dataclass(frozen=True, kw_only=True)
class MaskMethod(FineTuned):
  """A fine-tuned method whose edit zeroes a fraction R of the parameters.

  Attributes:
    ratio: mask ratio R in (0, 1], counted in parameters; None: the paper's for
      the dataset (0.02 on CIFAR, 0.04 on MNIST-like data and Tiny-ImageNet),
      which :func:`fmjax.unlearning.make_config` fills in.
    freeze_mask: keep the masked weights at zero during the fine-tuning.
  """
  masks: ClassVar[bool] = True
  ratio: float | None = None
  freeze_mask: bool = False
  limits: ClassVar[dict[str, str]] = {"ratio": "(0,1]"}

  def for_data(self, info: data.DatasetInfo) -> Method:
    return fill_none(super().for_data(info), ratio=default_ratio(info.name))

  def mask_ratio(self) -> float:
    """R; an edit called with ``ratio=None`` (the dataset's default, unresolved) is refused."""
    if self.ratio is None:
      raise ValueError(f"{self.name}: ratio is None (the dataset's default, which "
                       "fmjax.unlearning.make_config fills in); pass a ratio, e.g. "
                       f"{type(self).__name__}(ratio=0.02).")
    return self.ratio


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scoring:
  """The settings of a method whose edit scores examples in batches (a mixin).

  Attributes:
    score_batch_size: examples per scoring batch.
    score_limit: score on at most this many remain examples (a fixed random
      subset; sums are rescaled to the whole set). None: all.
  """
  limits: ClassVar[dict[str, str]] = {"score_batch_size": ">=1", "score_limit": ">=1"}
  score_batch_size: int = 256
  score_limit: int | None = None


def examples_per_block(at_32x32: int, image_shape: tuple[int, ...]) -> int:
  """The examples of one compiled scoring block for images of ``image_shape`` (H, W, C):
  ``at_32x32`` for CIFAR-sized images and smaller, fewer for larger ones so that a block
  holds as many pixels (64x64 Tiny-ImageNet: a quarter). A block's memory grows with its
  pixels: GoogLeNet's Fisher block on Tiny-ImageNet needed 41 GB at 128 examples
  (``make bench-memory``), 10 GB at 32."""
  h, w = image_shape[:2]
  return max(1, min(at_32x32, at_32x32 * 32 * 32 // (h * w)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class FisherScoring(Scoring):
  """The settings of a method that scores with :func:`fmjax.fisher.make_fisher_diag`.

  Attributes:
    fisher_chunk: examples per compiled Fisher block. None: the data's
      (:func:`examples_per_block` of 128: 128 up to 32x32 images, 32 at 64x64), which
      :func:`fmjax.unlearning.make_config` fills in.
  """
  limits: ClassVar[dict[str, str]] = {"fisher_chunk": ">=1"}
  fisher_chunk: int | None = None
  FISHER_CHUNK: ClassVar[int] = 128   # at 32x32

  def fisher_block(self, image_shape: tuple[int, ...]) -> int:
    """``fisher_chunk``, or the data's default for images of ``image_shape``."""
    return self.fisher_chunk or examples_per_block(self.FISHER_CHUNK, image_shape)

  def for_data(self, info: data.DatasetInfo) -> Method:
    return fill_none(_for_data_after(super(), self, info),
                     fisher_chunk=self.fisher_block(info.image_shape))


def check_choices(method: Method) -> None:
  """Refuses a value outside a ``Literal`` field's choices (or its other types), naming them."""
  for name, kind in _fields.field_types(type(method)).items():
    union = typing.get_args(kind) if typing.get_origin(kind) is not Literal else (kind,)
    choices = [v for a in union if typing.get_origin(a) is Literal for v in typing.get_args(a)]
    if not choices:
      continue
    value = getattr(method, name)
    numbers = float in union or int in union
    if (value in choices and not isinstance(value, bool)) or (value is None and
                                                              type(None) in union):
      continue
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
      continue
    option = "--" + name.replace("_", "-")
    raise ValueError(f"{method.name}: {name} ({option}) must be one of {choices}"
                     f"{' or a number' if numbers else ''}, got {value!r}.")


def register(cls: type[Method]) -> type[Method]:
  """Adds a :class:`Method` subclass to the registry under ``cls.name`` (a decorator).

  Raises:
    ValueError: ``cls`` is not a frozen Method dataclass, has no name, or its name
      is taken by another class.
  """
  if not (isinstance(cls, type) and issubclass(cls, Method)):
    raise ValueError(f"register takes a subclass of fmjax.methods.Method, got {cls!r}.")
  if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in vars(cls) or not (
      cls.__dataclass_params__.frozen):
    raise ValueError(f"{cls.__name__}: decorate it with @dataclasses.dataclass(frozen=True, "
                     "kw_only=True) under @register, so that its settings are its fields.")
  if not cls.name or not cls.name.isidentifier():
    raise ValueError(f"{cls.__name__}: set the class attribute name (a Python identifier, "
                     f"e.g. name: ClassVar[str] = 'my_method'), got {cls.name!r}.")
  old = _REGISTRY.get(cls.name)
  if old is not None and (old.__module__, old.__qualname__) != (cls.__module__,
                                                                 cls.__qualname__):
    raise ValueError(f"method name {cls.name!r} is taken by {old.__module__}."
                     f"{old.__qualname__}; give {cls.__name__} another name.")
  _REGISTRY[cls.name] = cls
  return cls


def import_methods(module: str) -> None:
  """Imports ``module`` so that the methods it registers are known (``--import``)."""
  try:
    importlib.import_module(module)
  except ImportError as e:
    raise ValueError(f"--import {module}: cannot import it ({e}); is it on PYTHONPATH or "
                     "installed in this environment?") from None


def load_entry_points() -> None:
  """Registers the methods of installed packages (entry-point group ``fmjax.methods``,
  each a module or a Method class), once per process."""
  if _PLUGINS_LOADED[0]:
    return
  _PLUGINS_LOADED[0] = True
  for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
    try:
      loaded = entry.load()
    except Exception as e:   # a broken plug-in names itself, it does not hide the others
      raise ValueError(f"the {ENTRY_POINT_GROUP} entry point {entry.name!r} ({entry.value}) "
                       f"fails to load: {e}. Fix or uninstall that package.") from None
    if isinstance(loaded, type) and issubclass(loaded, Method):
      register(loaded)


def registry() -> dict[str, type[Method]]:
  """``{name: class}`` of every known method (entry points loaded), in registration order."""
  load_entry_points()
  return dict(_REGISTRY)


def get_method(name: str) -> type[Method]:
  """The class of the method called ``name``; a ValueError lists the known names."""
  known = registry()
  if name not in known:
    raise ValueError(f"unknown method {name!r}; known methods: {', '.join(known)} (a method "
                     "of your own: --import MODULE, or an fmjax.methods entry point).")
  return known[name]


def tagged(tag: str) -> tuple[str, ...]:
  """The names of the methods carrying ``tag``, in registration order."""
  return tuple(n for n, cls in registry().items() if tag in cls.tags)


def defaults(name: str) -> Method:
  """The method called ``name`` at its defaults (its authors' recipe)."""
  return get_method(name)()


def field_names(name: str) -> frozenset[str]:
  """The settings (field names) of the method called ``name``."""
  return frozenset(f.name for f in dataclasses.fields(get_method(name)))


def make(name: str, **settings: Any) -> Method:
  """The method ``name`` with ``settings`` (its fields, None included: it is a value).

  Raises:
    ValueError: a setting the method does not have (its settings are listed).
  """
  cls = get_method(name)
  unknown = sorted(set(settings) - field_names(name))
  if unknown:
    raise ValueError(f"{name} has no setting {', '.join(unknown)}; its settings: "
                     f"{', '.join(sorted(field_names(name)))} (python -m fmjax unlearn "
                     f"--method {name} --help).")
  return cls(**settings)


def from_json(raw: dict) -> Method:
  """The method a ``config.json``'s ``{"name": ..., fields}`` records."""
  raw = dict(raw)
  name = raw.pop("name")
  cls = get_method(name)
  unknown = sorted(set(raw) - field_names(name))
  if unknown:
    raise ValueError(f"config.json records {name} settings {unknown} that this fmjax's {name} "
                     "does not have; it was written by another version or another method "
                     "definition: run it again in a new --workdir.")
  kinds = _fields.field_types(cls)
  values = {k: tuple(v) if typing.get_origin(kinds[k]) is tuple and v is not None else v
            for k, v in raw.items()}
  return cls(**values)
