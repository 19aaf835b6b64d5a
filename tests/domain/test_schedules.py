"""Measurement schedules (pure): validation naming the field, occurrences, the window rules,
stable administration ids, the free text of old attachments, and properties over random
schedules."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance.core.errors import ValidationError
from alliance.core.events.codec import UPCAST_OCCURRED_AT
from alliance.core.goal import upcast_measure_attached_v1
from alliance.core.schedules import (
    GRACE_DAYS,
    LAST_WINDOW_DAYS,
    Observation,
    Schedule,
    administration_id,
    administrations,
    next_on_or_after,
    occurrences,
    parse_free_text,
    previous_on_or_before,
    status,
    validate_schedule,
)

OWNER = uuid.UUID("00000000-0000-4000-8000-000000000001")
MONDAY = date(2026, 3, 2)
WEEKLY = Schedule(kind="every", interval=1, unit="weeks", start=MONDAY, timezone="Europe/London")


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def seen(day: date, hour: int = 12, instrument: str = "phq9") -> Observation:
    return Observation(measurement_id=uuid.uuid4(), instrument_id=instrument, observed_at=at(day, hour))


def read(schedule: Schedule, now: datetime, measurements: tuple[Observation, ...] = (), **kw: object):
    return status(schedule, owner_id=OWNER, instrument_id="phq9", goal_id=None,
                  measurements=measurements, now=now, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("schedule", "field", "code"), [
    (Schedule(kind="every", interval=1, unit="weeks", start=MONDAY, end=MONDAY - timedelta(days=1)),
     "schedule.end", "schedule_end_before_start"),
    (Schedule(kind="every", interval=0, unit="weeks", start=MONDAY), "schedule.interval",
     "schedule_interval_invalid"),
    (Schedule(kind="every", interval=1, start=MONDAY), "schedule.unit", "schedule_unit_required"),
    (Schedule(kind="every", interval=1, unit="days", start=MONDAY, timezone="Mars/Olympus"),
     "schedule.timezone", "schedule_timezone_unknown"),
    (Schedule(kind="every", interval=1, unit="days", start=MONDAY, timezone="../../etc/passwd"),
     "schedule.timezone", "schedule_timezone_unknown"),
    (Schedule(kind="weekdays", start=MONDAY), "schedule.weekdays", "schedule_weekdays_empty"),
    (Schedule(kind="weekdays", weekdays=(8,), start=MONDAY), "schedule.weekdays", "schedule_weekday_invalid"),
    # Monday to Tuesday holds no Friday: the schedule would never make anything due.
    (Schedule(kind="weekdays", weekdays=(5,), start=MONDAY, end=MONDAY + timedelta(days=1)),
     "schedule.weekdays", "schedule_no_occurrence"),
    (Schedule(kind="legacy", start=MONDAY, text="monthly"), "schedule.kind", "schedule_kind_invalid"),
])
def test_a_schedule_that_cannot_make_anything_due_is_refused_naming_the_field(schedule, field, code) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_schedule(schedule)
    assert caught.value.field == field and caught.value.code == code


def test_weekdays_are_sorted_once_and_fall_on_their_days() -> None:
    s = validate_schedule(Schedule(kind="weekdays", weekdays=(5, 1, 1), start=date(2026, 3, 3)))
    assert s.weekdays == (1, 5)
    assert occurrences(s, since=date(2026, 3, 1), until=date(2026, 3, 14)) == [
        date(2026, 3, 6), date(2026, 3, 9), date(2026, 3, 13)]


def test_every_n_counts_from_the_start_and_stops_at_the_end() -> None:
    s = Schedule(kind="every", interval=2, unit="weeks", start=MONDAY, end=date(2026, 4, 13))
    assert occurrences(s, since=date(2026, 1, 1), until=date(2026, 12, 31)) == [
        MONDAY, date(2026, 3, 16), date(2026, 3, 30), date(2026, 4, 13)]


def test_at_checkpoints_follows_the_checkpoints_on_or_after_the_start() -> None:
    s = Schedule(kind="at_checkpoints", start=MONDAY)
    cps = (date(2026, 2, 1), date(2026, 4, 1), date(2026, 3, 10))
    assert occurrences(s, since=date(2026, 1, 1), until=date(2026, 12, 31), checkpoints=cps) == [
        date(2026, 3, 10), date(2026, 4, 1)]


def test_the_window_rules_upcoming_due_overdue_missed() -> None:
    assert read(WEEKLY, at(MONDAY - timedelta(days=1))).next_due == MONDAY
    assert read(WEEKLY, at(MONDAY - timedelta(days=1))).state is None
    assert read(WEEKLY, at(MONDAY)).state == "due"
    assert read(WEEKLY, at(MONDAY + timedelta(days=GRACE_DAYS - 1))).state == "due"
    overdue = read(WEEKLY, at(MONDAY + timedelta(days=GRACE_DAYS)))
    assert overdue.state == "overdue" and overdue.next_due == MONDAY
    [first, second] = administrations(WEEKLY, owner_id=OWNER, instrument_id="phq9", goal_id=None,
                                      since=MONDAY, until=MONDAY + timedelta(days=7), measurements=(),
                                      now=at(MONDAY + timedelta(days=7)))
    assert first.state == "missed" and second.state == "due"  # the next occurrence arrived


def test_a_measurement_in_the_window_completes_it_and_the_next_one_is_next_due() -> None:
    m = seen(MONDAY + timedelta(days=3))
    done = read(WEEKLY, at(MONDAY + timedelta(days=4)), (m, seen(MONDAY + timedelta(days=5))))
    assert done.state == "done" and done.current is not None and done.current.measurement_id == m.measurement_id
    assert done.next_due == MONDAY + timedelta(days=7)
    # another instrument, or a measurement before the window opened, completes nothing
    assert read(WEEKLY, at(MONDAY + timedelta(days=1)), (seen(MONDAY, instrument="gad7"),)).state == "due"
    assert read(WEEKLY, at(MONDAY + timedelta(days=1)), (seen(MONDAY - timedelta(days=1)),)).state == "due"


def test_the_client_local_date_decides() -> None:
    # 23:30 UTC on Sunday is already Monday in Auckland: the Monday administration is due there.
    s = msgspec.structs.replace(WEEKLY, timezone="Pacific/Auckland")
    sunday_night = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert read(s, sunday_night).state == "due"
    assert read(WEEKLY, sunday_night).state is None  # still Sunday in London


def test_a_daily_diary_is_due_then_missed_never_overdue() -> None:
    daily = Schedule(kind="every", interval=1, unit="days", start=MONDAY)
    [a] = administrations(daily, owner_id=OWNER, instrument_id="mood", goal_id=None, since=MONDAY,
                          until=MONDAY, measurements=(), now=at(MONDAY + timedelta(days=1)))
    assert a.state == "missed"


def test_the_last_occurrence_keeps_a_window_of_a_week() -> None:
    s = Schedule(kind="every", interval=1, unit="weeks", start=MONDAY, end=MONDAY)
    [a] = administrations(s, owner_id=OWNER, instrument_id="phq9", goal_id=None, since=MONDAY, until=MONDAY,
                          measurements=(), now=at(MONDAY + timedelta(days=3)))
    assert a.window_ends == MONDAY + timedelta(days=LAST_WINDOW_DAYS) and a.state == "overdue"
    assert read(s, at(MONDAY + timedelta(days=LAST_WINDOW_DAYS))).next_due is None


def test_administration_ids_are_stable_and_distinct() -> None:
    a = administration_id(OWNER, "phq9", MONDAY)
    assert a == administration_id(OWNER, "phq9", MONDAY) and a.version == 5
    assert len({a, administration_id(OWNER, "gad7", MONDAY), administration_id(OWNER, "phq9", date(2026, 3, 9)),
                administration_id(uuid.uuid4(), "phq9", MONDAY)}) == 4


@pytest.mark.parametrize(("text", "kind", "interval", "unit"), [
    ("weekly", "every", 1, "weeks"), ("Daily", "every", 1, "days"), ("fortnightly", "every", 2, "weeks"),
    ("at_checkpoints", "at_checkpoints", None, None), ("P14D", "every", 14, "days"), ("P2W", "every", 2, "weeks"),
    ("monthly", "legacy", None, None), ("after each session", "legacy", None, None), ("P0D", "legacy", None, None),
])
def test_the_free_text_of_old_attachments(text, kind, interval, unit) -> None:
    s = parse_free_text(text, start=MONDAY)
    assert (s.kind, s.interval, s.unit, s.start, s.timezone) == (kind, interval, unit, MONDAY, "UTC")
    if kind == "legacy":
        assert s.text == text and occurrences(s, since=MONDAY, until=MONDAY + timedelta(days=400)) == []
        assert read(s, at(MONDAY + timedelta(days=30))).next_due is None


def test_a_v1_attachment_is_upcast_to_a_schedule_starting_on_its_day() -> None:
    v1 = {"type": "goal.measure_attached", "instrument_id": "phq9", "schedule": "weekly",
          "by": str(OWNER), "by_role": "clinician", UPCAST_OCCURRED_AT: "2026-03-04T09:15:00+00:00"}
    v2 = upcast_measure_attached_v1(v1)
    assert v2["schedule"] == msgspec.to_builtins(Schedule(kind="every", interval=1, unit="weeks",
                                                          start=date(2026, 3, 4)))


# --- properties ---------------------------------------------------------------------------

days = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))
zones = st.sampled_from(["UTC", "Europe/London", "America/New_York", "Pacific/Auckland", "Asia/Kolkata"])


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    start = draw(days)
    end = draw(st.none() | st.integers(0, 400).map(lambda n: start + timedelta(days=n)))
    if draw(st.booleans()):
        s = Schedule(kind="every", interval=draw(st.integers(1, 6)), unit=draw(st.sampled_from(["days", "weeks"])),
                     start=start, end=end, timezone=draw(zones))
    else:
        s = Schedule(kind="weekdays", weekdays=tuple(draw(st.sets(st.integers(1, 7), min_size=1))),
                     start=start, end=end, timezone=draw(zones))
    try:
        return validate_schedule(s)
    except ValidationError:
        return validate_schedule(msgspec.structs.replace(s, end=None))


@settings(max_examples=200, deadline=None)
@given(schedules(), days, st.integers(0, 120))
def test_occurrences_are_sorted_inside_the_schedule_and_agree_with_next_and_previous(s, since, span) -> None:
    until = since + timedelta(days=span)
    found = occurrences(s, since=since, until=until)
    assert found == sorted(set(found))
    assert all(s.start <= d <= until and d >= since and (s.end is None or d <= s.end) for d in found)
    if s.kind == "weekdays":
        assert all(d.isoweekday() in s.weekdays for d in found)
    else:
        assert all((d - s.start).days % ((s.interval or 1) * (7 if s.unit == "weeks" else 1)) == 0 for d in found)
    for d in found:
        assert next_on_or_after(s, d) == d and previous_on_or_before(s, d) == d
    if found:
        assert next_on_or_after(s, since) == found[0]


@settings(max_examples=200, deadline=None)
@given(schedules(), st.integers(-10, 400), st.integers(0, 23))
def test_at_any_moment_the_state_follows_the_rules(s, offset, hour) -> None:
    now = at(s.start + timedelta(days=offset), hour)
    read_now = read(s, now)
    assert read_now.state in (None, "due", "overdue")  # no measurement: never done
    if read_now.next_due is not None and read_now.state is None:
        assert read_now.next_due > now.astimezone(ZoneInfo(s.timezone)).date()
    if read_now.current is not None:
        # a measurement on the administration's own day always completes it
        c = read_now.current
        m = Observation(measurement_id=uuid.uuid4(), instrument_id="phq9",
                        observed_at=datetime.combine(c.due_on, datetime.min.time(),
                                                     tzinfo=ZoneInfo(s.timezone))
                        + timedelta(hours=12))
        assert read(s, now, (m,)).state == "done"


# --- the deciders: goal and episode attachments ----------------------------------------------

def test_an_agreed_goals_schedule_changes_by_a_proposal_the_other_party_accepts() -> None:
    from alliance.core.goal import AcceptChange, AttachMeasure, ProposeChange
    from tests.domain.helpers import CLIENT, CLINICIAN, fold_goal, goal_cmd, raises
    from tests.domain.test_goal import active_goal, decide, run

    g = run(active_goal(), goal_cmd(AttachMeasure, CLINICIAN, instrument_id="phq9", schedule=WEEKLY))
    fortnightly = msgspec.structs.replace(WEEKLY, interval=2)
    raises("change_proposal_required", decide, g,
           goal_cmd(AttachMeasure, CLINICIAN, instrument_id="phq9", schedule=fortnightly))
    bad = msgspec.structs.replace(WEEKLY, end=MONDAY - timedelta(days=1))
    error = raises("schedule_end_before_start", decide, g, goal_cmd(
        ProposeChange, CLINICIAN, change_id=uuid.uuid4(), kind="measure_schedule", instrument_id="phq9",
        new_schedule=bad))
    assert error.field == "new_schedule.end"
    raises("measure_not_attached", decide, g, goal_cmd(
        ProposeChange, CLINICIAN, change_id=uuid.uuid4(), kind="measure_schedule", instrument_id="gad7",
        new_schedule=fortnightly))
    change = uuid.uuid4()
    g = run(g, goal_cmd(ProposeChange, CLINICIAN, change_id=change, kind="measure_schedule", instrument_id="phq9",
                        new_schedule=fortnightly))
    assert fold_goal(g).schedules == {"phq9": WEEKLY}  # not until the other party accepts
    raises("must_be_other_party", decide, g, goal_cmd(AcceptChange, CLINICIAN, change_id=change))
    g = run(g, goal_cmd(AcceptChange, CLIENT, change_id=change))
    assert fold_goal(g).schedules == {"phq9": fortnightly} and fold_goal(g).measures == {"phq9": "every 2 weeks"}


def test_a_measure_attached_to_the_episode_needs_measurement_consent_and_care() -> None:
    from alliance.core.client import (
        AttachEpisodeMeasure,
        DetachEpisodeMeasure,
        DischargeClient,
        decide_client,
        evolve_client,
    )
    from alliance.core.consent import ConsentScope
    from tests.domain.helpers import CLIENT, CLINICIAN, OUTSIDER, cmd, enrolled, fold_client, raises

    daily = Schedule(kind="every", interval=1, unit="days", start=MONDAY)
    state = fold_client(enrolled(ConsentScope.MEASUREMENT))
    [event] = decide_client(cmd(AttachEpisodeMeasure, CLIENT, instrument_id="mood_diary", schedule=daily), state)
    state = evolve_client(state, event)
    assert state.episode_measures == {"mood_diary": daily}
    raises("measure_already_attached", decide_client,
           cmd(AttachEpisodeMeasure, CLINICIAN, instrument_id="mood_diary", schedule=daily), state)
    raises("not_on_care_team", decide_client,
           cmd(AttachEpisodeMeasure, OUTSIDER, instrument_id="gad7", schedule=daily), state)
    raises("consent_not_in_force", decide_client,
           cmd(AttachEpisodeMeasure, CLIENT, instrument_id="gad7", schedule=daily), fold_client(enrolled()))
    error = raises("schedule_weekdays_empty", decide_client, cmd(
        AttachEpisodeMeasure, CLIENT, instrument_id="gad7", schedule=Schedule(kind="weekdays", start=MONDAY)), state)
    assert error.field == "schedule.weekdays"
    [discharged] = decide_client(cmd(DischargeClient, CLINICIAN, reason="done"), state)
    raises("client_discharged", decide_client,
           cmd(AttachEpisodeMeasure, CLIENT, instrument_id="gad7", schedule=daily), evolve_client(state, discharged))
    [detached] = decide_client(cmd(DetachEpisodeMeasure, CLINICIAN, instrument_id="mood_diary"), state)
    assert evolve_client(state, detached).episode_measures == {}
