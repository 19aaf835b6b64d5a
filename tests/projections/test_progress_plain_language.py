"""Review summaries and the client's view of a review go through the plain-language check."""

from __future__ import annotations

import uuid

from alliance.core.goal import ReviewRecorded, goal_stream
from alliance.core.plain_language import glossary_from_plugins, glossary_in_force, use_glossary
from alliance.plugins.manager import get_plugin_manager
from tests.projections.helpers import Client
from tests.projections.progress_support import progress_of


async def test_review_texts_are_checked_with_the_plugin_glossary() -> None:
    before = dict(glossary_in_force())
    use_glossary(glossary_from_plugins(get_plugin_manager()))
    try:
        c = Client().enrol()
        gid = c.goal()
        c._add(goal_stream(gid), ReviewRecorded(review_id=uuid.uuid4(), outcome="continue",
                                                summary="Less dysphoria this month", client_view="Less rumination",
                                                **c.by()))
        [review] = (await progress_of(c))["goals"][0]["reviews"]
    finally:
        use_glossary(before)
    assert [(h["field"], h["term"]) for h in review["plain_language"]] == [("summary", "dysphoria"),
                                                                          ("client_view", "rumination")]
