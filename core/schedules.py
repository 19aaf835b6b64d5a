"""Measurement schedules and the administrations they make due (pure: time is passed in).

A :class:`Schedule` says when an instrument is to be answered: ``every`` N days or weeks
counted from ``start``, on given ISO ``weekdays``, or ``at_checkpoints`` (each checkpoint of
the goal it belongs to). Dates are the client's local dates in the schedule's IANA
``timezone``; ``end`` (inclusive) is optional. ``legacy`` keeps an old free-text schedule that
could not be read as one of those ("monthly", "after sessions"): it is shown as written and is
never due, so nothing is chased on a date nobody agreed.

Each occurrence is an *administration*, whose state is computed when read, never stored:

- its **window** runs from its own day up to (not including) the next occurrence; the last
  occurrence of an ended schedule (and the latest checkpoint) keeps a window of
  :data:`LAST_WINDOW_DAYS`;
- **done**: a measurement of the instrument observed (local date) inside the window; the
  first one completes it, a second one in the same window completes nothing more;
- **upcoming**: its day has not come;
- **due**: from its day for :data:`GRACE_DAYS` days;
- **overdue**: after the grace, while the window is still open;
- **missed**: the window closed (the next occurrence arrived) with no measurement.

A daily schedule's window is one day, shorter than the grace, so a daily diary is due and
then missed, never overdue: chasing yesterday's diary is not the point of a diary.

``administration_id`` is deterministic (uuid5 of owner, instrument and due date), so the
reminder process and one-time links can name an administration before anything is stored.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec

from alliance.core.errors import ValidationError

ScheduleKind = Literal["every", "weekdays", "at_checkpoints", "legacy"]
IntervalUnit = Literal["days", "weeks"]
AdministrationState = Literal["upcoming", "due", "overdue", "missed", "done"]

#: Days an administration stays "due" before it is "overdue". Two days lets a questionnaire
#: sent on its day be answered over a weekend or a busy day before the care team is told,
#: and still leaves most of a weekly window (five of seven days) to follow it up. It is a
#: workflow choice, not a clinical threshold.
GRACE_DAYS = 2
#: The window of an occurrence that has no next one (an ended schedule's last occurrence, the
#: latest checkpoint): a week, the interval most routine outcome measures are given at.
LAST_WINDOW_DAYS = 7
#: The ``timezone`` a schedule takes when none is known (old free-text attachments).
DEFAULT_TIMEZONE = "UTC"

_NAMESPACE = UUID("6f1c1f7e-4c3a-5b8e-9d7a-2f3b8c1e0a16")


class Schedule(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """When an instrument is due. Build with :func:`validate_schedule` at the edges."""

    kind: ScheduleKind
    start: date
    end: date | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] = DEFAULT_TIMEZONE
    #: ``every``: the interval, a whole number of ``unit`` (1 or more).
    interval: int | None = None
    unit: IntervalUnit | None = None
    #: ``weekdays``: ISO weekdays, 1 = Monday … 7 = Sunday (sorted, no repeats).
    weekdays: Annotated[tuple[int, ...], msgspec.Meta(max_length=7)] = ()
    #: ``legacy``: the free text the measure was attached with before schedules had a shape
    #: (free text was a label, at most 200 characters).
    text: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class Observation(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A measurement as schedules need it: which instrument, when it was observed."""

    measurement_id: UUID
    instrument_id: str
    observed_at: datetime


class Administration(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    administration_id: UUID
    instrument_id: str
    goal_id: UUID | None  # None: attached to the episode
    due_on: date  # the client's local date
    window_ends: date  # first local date no longer in its window
    state: AdministrationState
    measurement_id: UUID | None = None  # the measurement that completed it


class MeasureStatus(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One attached measure as read at ``now``: the administration open today (if any) and
    the next date the client is asked (``next_due``: today's or an overdue one while it is
    still open and not done, else the next upcoming occurrence; None when nothing is left)."""

    current: Administration | None
    next_due: date | None
    state: AdministrationState | None  # the current administration's state


# --- validation ---------------------------------------------------------------------------

def _invalid(message: str, code: str, field: str) -> ValidationError:
    return ValidationError(message, code=code, field=f"schedule.{field}")


def zone_of(schedule: Schedule) -> ZoneInfo:
    try:
        return ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def _valid_zone(name: str) -> bool:
    # ZoneInfo also opens file paths below the tz database ("../etc"), so the name must be
    # one the database lists.
    return name in _zones()


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def validate_schedule(schedule: Schedule) -> Schedule:
    """The schedule, normalised (sorted weekdays); raises :class:`ValidationError` naming the
    field (``schedule.end``, ``schedule.timezone``…) when it cannot make anything due."""
    if schedule.kind == "legacy":
        raise _invalid("Choose every N days or weeks, weekdays, or at each checkpoint.",
                       "schedule_kind_invalid", "kind")
    if not _valid_zone(schedule.timezone):
        raise _invalid(f"Unknown time zone {schedule.timezone!r}; use an IANA name such as "
                       "Europe/London.", "schedule_timezone_unknown", "timezone")
    if schedule.end is not None and schedule.end < schedule.start:
        raise _invalid("The schedule ends before it starts.", "schedule_end_before_start", "end")
    match schedule.kind:
        case "every":
            if schedule.interval is None or schedule.interval < 1:
                raise _invalid("The interval is a whole number of days or weeks, 1 or more.",
                               "schedule_interval_invalid", "interval")
            if schedule.unit is None:
                raise _invalid("Say whether the interval is in days or weeks.",
                               "schedule_unit_required", "unit")
            if schedule.weekdays:
                raise _invalid("Weekdays belong to a weekdays schedule.",
                               "schedule_weekdays_unexpected", "weekdays")
            return msgspec.structs.replace(schedule, text=None)
        case "weekdays":
            days = tuple(sorted(set(schedule.weekdays)))
            if not days:
                raise _invalid("Choose at least one weekday.", "schedule_weekdays_empty",
                               "weekdays")
            if any(not 1 <= d <= 7 for d in days):
                raise _invalid("Weekdays are ISO numbers, 1 (Monday) to 7 (Sunday).",
                               "schedule_weekday_invalid", "weekdays")
            if schedule.interval is not None or schedule.unit is not None:
                raise _invalid("An interval belongs to an every-N schedule.",
                               "schedule_interval_unexpected", "interval")
            normal = msgspec.structs.replace(schedule, weekdays=days, text=None)
            if schedule.end is not None and next_on_or_after(normal, schedule.start) is None:
                raise _invalid("None of these weekdays falls between the start and the end.",
                               "schedule_no_occurrence", "weekdays")
            return normal
        case "at_checkpoints":
            if schedule.interval is not None or schedule.unit is not None or schedule.weekdays:
                raise _invalid("A checkpoint schedule takes no interval or weekdays.",
                               "schedule_interval_unexpected", "interval")
            return msgspec.structs.replace(schedule, text=None)
    raise _invalid("Unknown schedule kind.", "schedule_kind_invalid", "kind")


# --- occurrences --------------------------------------------------------------------------

def _step(schedule: Schedule) -> int:
    return (schedule.interval or 1) * (7 if schedule.unit == "weeks" else 1)


def _within(schedule: Schedule, day: date) -> bool:
    return day >= schedule.start and (schedule.end is None or day <= schedule.end)


def _checkpoint_dates(schedule: Schedule, checkpoints: Iterable[date]) -> list[date]:
    return sorted({d for d in checkpoints if _within(schedule, d)})


def next_on_or_after(schedule: Schedule, day: date,
                     checkpoints: Iterable[date] = ()) -> date | None:
    """The first occurrence on or after ``day``, or None."""
    day = max(day, schedule.start)
    found: date | None = None
    match schedule.kind:
        case "every":
            step = _step(schedule)
            offset = (day - schedule.start).days
            found = schedule.start + timedelta(days=-(-offset // step) * step)
        case "weekdays":
            wanted = set(schedule.weekdays)
            for k in range(7):
                candidate = day + timedelta(days=k)
                if candidate.isoweekday() in wanted:
                    found = candidate
                    break
        case "at_checkpoints":
            dates = _checkpoint_dates(schedule, checkpoints)
            i = bisect.bisect_left(dates, day)
            found = dates[i] if i < len(dates) else None
        case _:
            found = None
    if found is None or not _within(schedule, found):
        return None
    return found


def previous_on_or_before(schedule: Schedule, day: date,
                          checkpoints: Iterable[date] = ()) -> date | None:
    """The last occurrence on or before ``day``, or None."""
    if schedule.end is not None:
        day = min(day, schedule.end)
    if day < schedule.start:
        return None
    match schedule.kind:
        case "every":
            step = _step(schedule)
            return schedule.start + timedelta(days=((day - schedule.start).days // step) * step)
        case "weekdays":
            wanted = set(schedule.weekdays)
            for k in range(7):
                candidate = day - timedelta(days=k)
                if candidate < schedule.start:
                    return None
                if candidate.isoweekday() in wanted:
                    return candidate
            return None
        case "at_checkpoints":
            dates = _checkpoint_dates(schedule, checkpoints)
            i = bisect.bisect_right(dates, day)
            return dates[i - 1] if i else None
        case _:
            return None


def occurrences(schedule: Schedule, *, since: date, until: date,
                checkpoints: Iterable[date] = ()) -> list[date]:
    """Local dates the instrument is due on, from ``since`` to ``until`` (both inclusive)."""
    cps = tuple(checkpoints)
    out: list[date] = []
    day = next_on_or_after(schedule, since, cps)
    while day is not None and day <= until:
        out.append(day)
        day = next_on_or_after(schedule, day + timedelta(days=1), cps)
    return out


def window_end(schedule: Schedule, due_on: date, checkpoints: Iterable[date] = ()) -> date:
    """The first local date after ``due_on``'s window: the next occurrence, or
    ``due_on + LAST_WINDOW_DAYS`` when there is none."""
    following = next_on_or_after(schedule, due_on + timedelta(days=1), checkpoints)
    return following if following is not None else due_on + timedelta(days=LAST_WINDOW_DAYS)


# --- administrations ----------------------------------------------------------------------

def administration_id(owner_id: UUID, instrument_id: str, due_on: date) -> UUID:
    """Stable id of one administration. ``owner_id`` is the goal's id, or the client's for a
    measure attached to the episode."""
    return uuid5(_NAMESPACE, f"{owner_id}/{instrument_id}/{due_on.isoformat()}")


def local_date(schedule: Schedule, moment: datetime) -> date:
    """``moment`` (aware) as a date in the schedule's time zone."""
    return moment.astimezone(zone_of(schedule)).date()


def _state(due_on: date, ends: date, today: date, done: bool) -> AdministrationState:
    if done:
        return "done"
    if today < due_on:
        return "upcoming"
    if today >= ends:
        return "missed"
    if today < due_on + timedelta(days=GRACE_DAYS):
        return "due"
    return "overdue"


def _completing(schedule: Schedule, instrument_id: str, due_on: date, ends: date,
                measurements: Sequence[Observation]) -> Observation | None:
    best: Observation | None = None
    for m in measurements:
        if m.instrument_id != instrument_id:
            continue
        if due_on <= local_date(schedule, m.observed_at) < ends \
                and (best is None or m.observed_at < best.observed_at):
            best = m
    return best


def administration(schedule: Schedule, *, owner_id: UUID, instrument_id: str,
                   goal_id: UUID | None, due_on: date, measurements: Sequence[Observation],
                   now: datetime, checkpoints: Iterable[date] = ()) -> Administration:
    """The administration due on ``due_on`` (an occurrence of ``schedule``) as read at ``now``."""
    ends = window_end(schedule, due_on, checkpoints)
    done = _completing(schedule, instrument_id, due_on, ends, measurements)
    return Administration(
        administration_id=administration_id(owner_id, instrument_id, due_on),
        instrument_id=instrument_id, goal_id=goal_id, due_on=due_on, window_ends=ends,
        state=_state(due_on, ends, local_date(schedule, now), done is not None),
        measurement_id=done.measurement_id if done else None)


def administrations(schedule: Schedule, *, owner_id: UUID, instrument_id: str,
                    goal_id: UUID | None, since: date, until: date,
                    measurements: Sequence[Observation], now: datetime,
                    checkpoints: Iterable[date] = ()) -> list[Administration]:
    """Every administration due from ``since`` to ``until`` (inclusive), as read at ``now``."""
    cps = tuple(checkpoints)
    return [administration(schedule, owner_id=owner_id, instrument_id=instrument_id,
                           goal_id=goal_id, due_on=day, measurements=measurements, now=now,
                           checkpoints=cps)
            for day in occurrences(schedule, since=since, until=until, checkpoints=cps)]


def status(schedule: Schedule, *, owner_id: UUID, instrument_id: str, goal_id: UUID | None,
           measurements: Sequence[Observation], now: datetime,
           checkpoints: Iterable[date] = ()) -> MeasureStatus:
    """The measure as read at ``now``: the administration whose window holds today, and
    the next due date."""
    cps = tuple(checkpoints)
    today = local_date(schedule, now)
    last = previous_on_or_before(schedule, today, cps)
    current: Administration | None = None
    if last is not None:
        candidate = administration(schedule, owner_id=owner_id, instrument_id=instrument_id,
                                   goal_id=goal_id, due_on=last, measurements=measurements,
                                   now=now, checkpoints=cps)
        if candidate.window_ends > today:
            current = candidate
    if current is not None and current.state in ("due", "overdue"):
        next_due: date | None = current.due_on
    else:
        next_due = next_on_or_after(schedule, today + timedelta(days=1), cps)
    return MeasureStatus(current=current, next_due=next_due,
                         state=current.state if current else None)


# --- the free text of old attachments -----------------------------------------------------

_WORDS: dict[str, tuple[int, IntervalUnit]] = {
    "daily": (1, "days"), "every day": (1, "days"), "weekly": (1, "weeks"),
    "every week": (1, "weeks"), "fortnightly": (2, "weeks"), "biweekly": (2, "weeks"),
    "every two weeks": (2, "weeks"), "every other week": (2, "weeks"),
}
_ISO_DURATION = re.compile(r"^P(\d+)([DW])$")


def parse_free_text(text: str, *, start: date, timezone: str = DEFAULT_TIMEZONE) -> Schedule:
    """A schedule from the free text measures were attached with before schedules had a
    shape: "daily", "weekly", "fortnightly", "at_checkpoints", an ISO 8601 duration of days or
    weeks ("P14D", "P2W"). Anything else, "monthly" among it (a month is no fixed number of
    days; guessing four weeks would make it due on dates nobody agreed), is kept as
    ``legacy``: shown as written, never due."""
    zone = timezone if _valid_zone(timezone) else DEFAULT_TIMEZONE
    key = " ".join(text.strip().lower().replace("-", " ").replace("_", " ").split())
    if key in ("at checkpoints", "at each checkpoint", "checkpoints"):
        return Schedule(kind="at_checkpoints", start=start, timezone=zone)
    if key in _WORDS:
        n, unit = _WORDS[key]
        return Schedule(kind="every", interval=n, unit=unit, start=start, timezone=zone)
    iso = _ISO_DURATION.match(text.strip().upper())
    if iso and int(iso.group(1)) >= 1:
        return Schedule(kind="every", interval=int(iso.group(1)),
                        unit="days" if iso.group(2) == "D" else "weeks", start=start,
                        timezone=zone)
    return Schedule(kind="legacy", start=start, timezone=zone, text=text)


def describe(schedule: Schedule) -> str:
    """The schedule in a few words, for views ("every 1 weeks" reads as "weekly")."""
    match schedule.kind:
        case "every":
            n, unit = schedule.interval or 1, schedule.unit or "days"
            if n == 1:
                return "daily" if unit == "days" else "weekly"
            return f"every {n} {unit}"
        case "weekdays":
            names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
            return "on " + ", ".join(names[d - 1] for d in schedule.weekdays)
        case "at_checkpoints":
            return "at each checkpoint"
        case _:
            return schedule.text or ""
