"""Property-based: any valid answer set scores inside the declared range; any invalid one is refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance.core.errors import ValidationError
from alliance.plugins.instruments import (
    ChoiceResponse,
    FreeTextResponse,
    InstrumentDefinition,
    IntegerResponse,
    Item,
    NumberResponse,
    YesNoResponse,
)
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

REGISTRY = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
DEFINITIONS = REGISTRY.definitions()


def valid_value(item: Item) -> st.SearchStrategy[Any]:
    response = item.response
    if isinstance(response, ChoiceResponse):
        return st.sampled_from([o.value for o in response.options])
    if isinstance(response, IntegerResponse):
        return st.integers(response.min, response.max)
    if isinstance(response, NumberResponse):
        return st.floats(response.min, response.max, allow_nan=False)
    if isinstance(response, YesNoResponse):
        return st.booleans()
    assert isinstance(response, FreeTextResponse)
    return st.text(min_size=1, max_size=min(response.max_length, 40))


def invalid_value(item: Item) -> st.SearchStrategy[Any]:
    response = item.response
    wrong_types = st.sampled_from([[1], {"v": 1}])
    if isinstance(response, ChoiceResponse):
        values = {o.value for o in response.options}
        return st.one_of(st.integers(-50, 50).filter(lambda v: v not in values), st.just("1"), st.just(True),
                         wrong_types)
    if isinstance(response, IntegerResponse):
        return st.one_of(st.integers(response.max + 1, response.max + 1000),
                         st.integers(response.min - 1000, response.min - 1),
                         st.floats(response.min + 0.1, response.max - 0.1).filter(lambda v: not v.is_integer()),
                         st.just(str(response.min)), st.just(False), wrong_types)
    if isinstance(response, NumberResponse):
        return st.one_of(st.floats(response.max + 0.001, response.max + 1000),
                         st.just(float("nan")), st.just(float("inf")), st.just("3"), wrong_types)
    if isinstance(response, YesNoResponse):
        return st.one_of(st.integers(0, 1), st.just("yes"), wrong_types)
    return st.one_of(st.integers(), st.text(min_size=response.max_length + 1, max_size=response.max_length + 5),
                     wrong_types)


@st.composite
def valid_answers(draw: st.DrawFn, definition: InstrumentDefinition) -> dict[str, Any]:
    answers = {}
    for item in definition.items:
        if item.required or draw(st.booleans()):
            answers[item.id] = draw(valid_value(item))
    return answers


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.id)
def test_valid_answers_score_inside_the_declared_range(definition: InstrumentDefinition) -> None:
    @settings(max_examples=60, deadline=None)
    @given(valid_answers(definition))
    def check(answers: dict[str, Any]) -> None:
        result = REGISTRY.score(definition.id, answers, version=definition.version)
        assert definition.score_range.min <= result.scores["total"] <= definition.score_range.max
        assert (result.band is not None) == bool(definition.bands)
        assert set(result.answers) | set(result.free_text) == {k for k, v in answers.items()}
        assert set(result.free_text) == {i.id for i in definition.items
                                         if isinstance(i.response, FreeTextResponse) and i.id in answers}

    check()


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.id)
def test_invalid_answers_are_refused_naming_the_item(definition: InstrumentDefinition) -> None:
    @st.composite
    def broken(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
        answers = draw(valid_answers(definition))
        kind = draw(st.sampled_from(["bad_value", "missing", "unknown"]))
        # A risk item may be skipped (recorded as incomplete and flagged), so it is not "missing".
        risk_ids = {r.item_id for r in definition.risk_items}
        required = [i for i in definition.items if i.required and i.id not in risk_ids]
        if kind == "missing" and required:
            item = draw(st.sampled_from(required))
            answers.pop(item.id, None)
            return answers, item.id, "invalid_answer"
        if kind == "unknown":
            extra = draw(st.text(alphabet="xyz_", min_size=3, max_size=8))
            answers[extra] = 1
            return answers, extra, "unknown_item"
        item = draw(st.sampled_from(definition.items))
        answers[item.id] = draw(invalid_value(item))
        return answers, item.id, "invalid_answer"

    @settings(max_examples=60, deadline=None)
    @given(broken())
    def check(case: tuple[dict[str, Any], str, str]) -> None:
        answers, item_id, code = case
        with pytest.raises(ValidationError) as refused:
            REGISTRY.score(definition.id, answers, version=definition.version)
        assert refused.value.code == code
        assert refused.value.field == f"answers.{item_id}"

    check()
