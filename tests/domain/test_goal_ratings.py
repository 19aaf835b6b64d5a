"""A rating of one goal (GAS, confidence) must name its goal (issue 13, observed failure #4).

One GAS +2 stored with no goal used to count for every goal of the client (two goals at −1
read as +2). The decider now refuses it, 422 ``goal_required`` naming ``goal_ids``; the
instrument declares it (``per_goal``), so a clinic's own goal rating does the same.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from alliance.core.client import RecordMeasurement, ReportedBy, decide_client
from alliance.core.errors import ValidationError
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.domain.helpers import ALL_SCOPES, CLIENT, T0, cmd, enrolled, fold_client, new_id

REGISTRY = InstrumentRegistry.from_plugin_manager(get_plugin_manager())


def rating(instrument_id: str, answers: Mapping[str, object], *goal_ids: object) -> RecordMeasurement:
    return cmd(RecordMeasurement, CLIENT, measurement_id=new_id(), instrument_id=instrument_id, answers=dict(answers),
               reported_by=ReportedBy(informant="self", channel="app"), observed_at=T0, goal_ids=goal_ids)


@pytest.mark.parametrize(("instrument_id", "answers"), [("gas", {"level": 2}), ("confidence", {"confidence": 7})])
def test_a_rating_of_one_goal_naming_no_goal_is_refused_naming_the_field(instrument_id: str,
                                                                         answers: dict[str, object]) -> None:
    # Given an enrolled client who consented to measurement
    state = fold_client(enrolled(*ALL_SCOPES))
    # When a GAS level (or a confidence rating) is recorded naming no goal
    with pytest.raises(ValidationError) as caught:
        decide_client(rating(instrument_id, answers), state, scorer=REGISTRY.score)
    # Then it is refused: 422, goal_required, field goal_ids; naming a goal records it
    assert (caught.value.status, caught.value.code, caught.value.field) == (422, "goal_required", "goal_ids")
    goal = new_id()
    [recorded] = decide_client(rating(instrument_id, answers, goal), state, scorer=REGISTRY.score)
    assert recorded.goal_ids == (goal,)  # type: ignore[attr-defined]


def test_a_client_wide_measure_needs_no_goal() -> None:
    state = fold_client(enrolled(*ALL_SCOPES))
    answers = {f"item{n}": 0 for n in range(1, 10)}
    [recorded] = decide_client(rating("phq9", answers), state, scorer=REGISTRY.score)
    assert recorded.goal_ids == ()  # type: ignore[attr-defined]
    assert REGISTRY.get("gas").per_goal and REGISTRY.get("confidence").per_goal and not REGISTRY.get("phq9").per_goal
