"""The one cache of compiled programs: shared by key, bounded, least recently used out."""

from __future__ import annotations

from fmjax import _compiled


def test_built_once_per_key_and_bounded(monkeypatch):
  monkeypatch.setattr(_compiled, "_CACHE", type(_compiled._CACHE)())
  monkeypatch.setattr(_compiled, "MAX_ENTRIES", 3)
  builds = []

  def build(k):
    builds.append(k)
    return object()

  first = _compiled.compiled(("a",), lambda: build("a"))
  assert _compiled.compiled(("a",), lambda: build("a")) is first
  for k in "bcd":
    _compiled.compiled((k,), lambda k=k: build(k))
  assert builds == ["a", "b", "c", "d"] and len(_compiled._CACHE) == 3
  _compiled.compiled(("a",), lambda: build("a"))   # evicted first: built again
  assert builds[-1] == "a" and ("b",) not in _compiled._CACHE


def test_unhashable_key_builds_every_time():
  calls = []
  _compiled.compiled(({"x": 1},), lambda: calls.append(1))
  _compiled.compiled(({"x": 1},), lambda: calls.append(1))
  assert calls == [1, 1]


def test_channel_programs_are_shared_between_runs():
  from fmjax.methods import _channels
  from fmjax.models import get_model
  model = get_model("small_cnn", 10)
  a = _channels.make_channel_means(model, {"train": False}, where="post")
  assert _channels.make_channel_means(model, {"train": False}, where="post") is a
