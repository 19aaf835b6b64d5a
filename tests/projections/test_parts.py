"""Layout diffs: the append-only fast path for map parts is taken exactly when it is safe."""

from __future__ import annotations

from alliance.core.projections.parts import Layout


def test_appended_only_means_old_keys_first_in_order_with_the_very_same_values() -> None:
    a, b, c = object(), object(), object()
    old = {"a": a, "b": b}
    assert Layout._appended_only(old, {**old, "c": c})
    assert Layout._appended_only(old, dict(old))  # nothing new
    assert not Layout._appended_only(old, {"b": b, "a": a})  # reordered
    assert not Layout._appended_only(old, {"a": a})  # one removed
    assert not Layout._appended_only(old, {"a": a, "b": object(), "c": c})  # a value replaced
    assert not Layout._appended_only(old, {"a": a, "x": b, "c": c})  # a key replaced
    assert not Layout._appended_only({"n": [1]}, {"n": [1]})  # equal is not enough: the general diff decides
