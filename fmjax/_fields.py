"""Settings dataclasses as command-line options and ``key=value`` overrides.

One source of truth for every setting: its dataclass field (name, type,
default) and the ``Attributes:`` entry of the class docstring (its help).
:func:`add_options` turns a dataclass into argparse options, and
:func:`parse_value` parses a value by the field's type for both the CLI and
``experiments.run --set``; a new field is an option without further code.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from typing import Any

_MISSING = dataclasses.MISSING


def field_types(cls) -> dict[str, Any]:
  """``{field name: resolved type}`` of a dataclass."""
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_docs(cls) -> dict[str, str]:
  """``{field name: text}`` from the ``Attributes:`` sections of ``cls``'s docstring and
  its bases' (a class's own text wins)."""
  docs: dict[str, str] = {}
  for klass in reversed(cls.__mro__):
    if klass is not object and klass.__doc__:
      docs.update(_attribute_docs(klass.__doc__))
  return docs


def _attribute_docs(doc: str) -> dict[str, str]:
  """``{name: text}`` of one docstring's ``Attributes:`` section."""
  section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
  docs: dict[str, str] = {}
  current = None
  for line in section.splitlines():
    m = re.match(r"^\s{2,6}([a-z_][a-z0-9_, ]*):\s*(.*)$", line)
    if m:
      names = [n.strip() for n in m.group(1).split(",")]
      current = names
      for n in names:
        docs[n] = m.group(2).strip()
    elif current and line.strip():
      for n in current:
        docs[n] += " " + line.strip()
    elif not line.strip() and current:
      current = None
  return docs


def type_name(kind: Any) -> str:
  if typing.get_origin(kind) is typing.Literal:
    return " or ".join(repr(a) for a in typing.get_args(kind))
  return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _options(kind: Any) -> list[Any]:
  """The alternatives of a union (None excluded), str last: it accepts anything."""
  args = [a for a in typing.get_args(kind) if a is not type(None)]
  return sorted(args, key=lambda a: a is str)


def parse_value(text: str, kind: Any, name: str) -> Any:
  """``text`` as a value of type ``kind``.

  Unions try each type (``none`` gives None where allowed), tuples take
  comma-separated values, bools true/false, Literals one of their values.

  Raises:
    ValueError: naming ``name``, the expected type and the value given.
  """
  origin = typing.get_origin(kind)
  if origin in (typing.Union, types.UnionType):
    if type(None) in typing.get_args(kind) and text.strip().lower() in ("none", "null"):
      return None
    for option in _options(kind):
      try:
        return parse_value(text, option, name)
      except ValueError:
        continue
    raise ValueError(f"{name}: expected {' or '.join(type_name(o) for o in _options(kind))}"
                     f"{' or none' if type(None) in typing.get_args(kind) else ''}, got "
                     f"{text!r}.")
  if origin is typing.Literal:
    for value in typing.get_args(kind):
      if text == str(value):
        return value
    raise ValueError(f"{name}: expected one of {list(typing.get_args(kind))}, got {text!r}.")
  if origin is tuple:
    item = typing.get_args(kind)[0] if typing.get_args(kind) else str
    return tuple(parse_value(p.strip(), item, name) for p in text.split(",") if p.strip())
  if kind is bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
      return True
    if lowered in ("false", "0", "no", "off"):
      return False
    raise ValueError(f"{name}: expected true or false, got {text!r}.")
  if kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      raise ValueError(f"{name}: expected {kind.__name__}, got {text!r}.") from None
  if kind is str:
    return text
  raise ValueError(f"{name}: a field of type {type_name(kind)} cannot be given as text.")


def metavar(kind: Any) -> str:
  """How an option's value looks: ``INT``, ``{sum,mean}``, ``compressed|FLOAT``, ``FLOAT,...``."""
  origin = typing.get_origin(kind)
  if origin is typing.Literal:
    values = [str(v) for v in typing.get_args(kind)]
    return values[0] if len(values) == 1 else "{" + ",".join(values) + "}"
  if origin in (typing.Union, types.UnionType):
    return "|".join(metavar(o) for o in _options(kind))
  if origin is tuple:
    item = typing.get_args(kind)[0] if typing.get_args(kind) else str
    return f"{metavar(item)},..."
  return type_name(kind).upper()


def add_options(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = (),
                defaults: dict[str, str] | None = None) -> list[str]:
  """Adds ``--field-name`` for every field of dataclass ``cls`` not in ``skip``.

  Options default to "not given" (argparse.SUPPRESS), so only what the user
  typed reaches the config and everything else keeps the code's defaults,
  which the help shows (``defaults`` overrides that text for a field whose
  default depends on the data, e.g. the mask ratio).

  Returns:
    The field names added (the Namespace attributes to read back).
  """
  docs = field_docs(cls)
  kinds = field_types(cls)
  added = []
  for f in dataclasses.fields(cls):
    if f.name in skip:
      continue
    kind = kinds[f.name]
    default = f.default if f.default is not _MISSING else (
        f.default_factory() if f.default_factory is not _MISSING else None)
    shown = (defaults or {}).get(f.name, repr(default))
    help_text = f"{docs.get(f.name, '')} (default: {shown})".strip()
    flag = "--" + f.name.replace("_", "-")
    if kind is bool and default is False:
      parser.add_argument(flag, action="store_const", const=True, default=argparse.SUPPRESS,
                          dest=f.name, help=help_text)
    elif kind is bool:
      parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                          default=argparse.SUPPRESS, dest=f.name, help=help_text)
    else:
      parser.add_argument(flag, default=argparse.SUPPRESS, dest=f.name, metavar=metavar(kind),
                          type=lambda text, kind=kind, flag=flag: _argparse_value(text, kind,
                                                                                  flag),
                          help=help_text)
    added.append(f.name)
  return added


def _argparse_value(text: str, kind: Any, flag: str) -> Any:
  try:
    return parse_value(text, kind, flag)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None
