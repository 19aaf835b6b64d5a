"""Who reported each entry, in the progress view (issue 13, observed failure #6, the view part).

A proxy's entry read as "self"; baseline and latest could come from different informants
without the view saying so.
"""

from __future__ import annotations

from alliance.core.identity import Role
from tests.projections.helpers import Client
from tests.projections.progress_support import progress_of, record


async def test_a_proxys_entry_reads_as_the_proxys_with_the_relationship() -> None:
    # Given a PHQ-9 the client's mother reported through a link
    c = Client().enrol()
    record(c, "phq9", 14, informant="proxy", relationship="parent", channel="link")
    # When progress is read
    [m] = (await progress_of(c))["measures"]
    # Then the entry names the proxy and the relationship, not "self"
    assert m["points"][0]["reported_by"] == {"informant": "proxy", "relationship": "parent", "channel": "link"}


async def test_an_entry_stored_before_informants_were_kept_reads_by_the_actor_role() -> None:
    # Given an entry stored as "self" by a proxy, with no channel (as upcast from schema 1)
    c = Client().enrol()
    record(c, "phq9", 14, informant="self", channel=None, role=Role.PROXY)
    [m] = (await progress_of(c))["measures"]
    assert m["points"][0]["reported_by"]["informant"] == "proxy"


async def test_the_view_says_when_baseline_and_latest_come_from_different_informants() -> None:
    # Given a baseline the parent reported and a latest score the client gave
    c = Client().enrol()
    record(c, "phq9", 18, informant="proxy", relationship="parent", channel="link")
    record(c, "phq9", 9, informant="self")
    # When progress is read
    [m] = (await progress_of(c))["measures"]
    # Then it says the informants differ, and who they were
    informants = m["informants"]
    assert informants["differ"] is True
    assert informants["baseline"]["informant"] == "proxy" and informants["latest"]["informant"] == "self"
    assert "different informants" in informants["note"] and "parent" in informants["note"]


async def test_the_same_informant_throughout_says_nothing_more() -> None:
    c = Client().enrol()
    record(c, "phq9", 18)
    record(c, "phq9", 12, channel="session")  # the client again, in a session: same informant
    [m] = (await progress_of(c))["measures"]
    assert m["informants"]["differ"] is False and "note" not in m["informants"]
