"""A realistic synthetic clinic, so a newcomer sees a living system within a minute.

Everything here is invented (no real person, no real text). Ids derive from fixed
names, so loading twice records nothing new, and the printed tokens keep working
against the same data. Times are backdated through the commands' own ``at``, so
the history reads like twelve weeks of therapy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from rich.console import Console

from alliance.core import client as c
from alliance.core import goal as g
from alliance.core.clinic import ActivateStaff, SetCrisisInformation
from alliance.core.errors import AllianceError
from alliance.core.handling import CommandHandler
from alliance.core.identity import Actor, Role
from alliance.core.runtime import open_runtime
from alliance.core.schedules import Schedule
from alliance.core.settings import Settings
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

DEMO = uuid.UUID("5d3a1c7e-0b4e-4c55-9a51-6f7c2d8e9a10")


def demo_id(name: str) -> UUID:
    return uuid.uuid5(DEMO, name)


TENANT = demo_id("clinic")
ADMIN, CLIN_A, CLIN_B, AUDITOR, SUPERVISOR = (demo_id(n) for n in
                                              ("admin", "clinician-a", "clinician-b", "auditor", "supervisor"))
CLIENTS = {name: demo_id(f"client-{name}") for name in ("robin", "sam", "alex", "jo")}


@dataclass
class Loader:
    handler: CommandHandler
    instruments: InstrumentRegistry
    start: datetime
    counter: int = 0

    def at(self, days: float) -> datetime:
        return self.start + timedelta(days=days)

    def cid(self, key: str) -> UUID:
        return demo_id(f"command:{key}")

    async def clinic(self, cmd_cls: Any, key: str, actor: Actor, days: float, **fields: Any) -> None:
        await self.handler.handle_clinic(cmd_cls(command_id=self.cid(key), actor=actor, at=self.at(days),
                                                 tenant_id=TENANT, **fields))

    async def client(self, subject: UUID, cmd_cls: Any, key: str, actor: Actor, days: float, **fields: Any) -> None:
        await self.handler.handle_client(subject, cmd_cls(command_id=self.cid(key), actor=actor, at=self.at(days),
                                                            tenant_id=TENANT, **fields))

    async def goal(self, client_id: UUID, goal_id: UUID, cmd_cls: Any, key: str, actor: Actor, days: float,
                   **fields: Any) -> int:
        try:
            await self.handler.handle_goal(cmd_cls(
                command_id=self.cid(key), actor=actor, at=self.at(days), tenant_id=TENANT, goal_id=goal_id,
                client_id=client_id, **fields))
        except AllianceError as exc:
            exc.message = f"{key}: {exc.message}"
            raise
        loaded = await self.handler.load_goal(goal_id)
        return int(loaded.state.version)

    async def measure(self, client_id: UUID, key: str, actor: Actor, days: float, instrument: str,
                      answers: dict[str, Any], goal_ids: tuple[UUID, ...] = ()) -> None:
        # Answers only: the handler's decider scores them with the installed instrument.
        measurement_id = demo_id(f"measurement:{key}")
        reporter = c.ReportedBy(informant="self", channel="app") if actor.role is Role.CLIENT \
            else c.ReportedBy(informant="clinician", channel="session")
        await self.client(client_id, c.RecordMeasurement, key, actor, days, measurement_id=measurement_id,
                          instrument_id=instrument, answers=answers, reported_by=reporter,
                          observed_at=self.at(days) - timedelta(hours=2), goal_ids=goal_ids)


def _phq9(total: int, item9: int = 0) -> dict[str, int]:
    answers = {f"item{i}": 0 for i in range(1, 10)}
    left = max(0, total - item9)
    for i in range(1, 9):
        answers[f"item{i}"] = min(3, left)
        left -= answers[f"item{i}"]
    answers["item9"] = item9
    return answers


def _gad7(total: int) -> dict[str, int]:
    answers, left = {}, total
    for i in range(1, 8):
        answers[f"item{i}"] = min(3, left)
        left -= answers[f"item{i}"]
    return answers


async def _load(loader: Loader) -> None:
    system = Actor(id=UUID(int=0), role=Role.SYSTEM)
    admin = Actor(id=ADMIN, role=Role.ADMIN)
    clin_a = Actor(id=CLIN_A, role=Role.CLINICIAN)
    clin_b = Actor(id=CLIN_B, role=Role.CLINICIAN)
    await loader.clinic(ActivateStaff, "admin", system, 0, staff_id=ADMIN, role=Role.ADMIN)
    for key, staff, role in (("a", CLIN_A, Role.CLINICIAN), ("b", CLIN_B, Role.CLINICIAN),
                             ("auditor", AUDITOR, Role.AUDITOR), ("supervisor", SUPERVISOR, Role.SUPERVISOR)):
        await loader.clinic(ActivateStaff, f"staff-{key}", admin, 0, staff_id=staff, role=role)
    await loader.clinic(SetCrisisInformation, "crisis", admin, 0,
                        text="If you feel unsafe, call the clinic's crisis line or your local emergency number.",
                        contacts=("Crisis line: 0000 000 000 (synthetic)",))

    for name, client_id in CLIENTS.items():
        primary = CLIN_A if name in {"robin", "sam"} else CLIN_B
        me = Actor(id=client_id, role=Role.CLIENT)
        await loader.client(client_id, c.EnrollClient, f"{name}:enrol", admin, 0, client_id=client_id,
                            episode_id=demo_id(f"episode-{name}"), primary_clinician_id=primary)
        for scope in ("goal_setting", "measurement", "care_team_sharing"):
            await loader.client(client_id, c.GrantConsent, f"{name}:consent:{scope}", me, 0.1, scope=scope,
                                text_version="2026-01", mode="self")

    # Robin: a goal in the client's own words, reflected, revised, agreed, changed with consent, improving.
    robin = CLIENTS["robin"]
    me = Actor(id=robin, role=Role.CLIENT)
    walk = demo_id("goal:robin:walk")
    await loader.goal(robin, walk, g.ProposeGoal, "robin:walk:propose", me, 1,
                      text="I want to get out of the house in the mornings with my dog")
    await loader.goal(robin, walk, g.ReflectGoal, "robin:walk:reflect", clin_a, 1.1,
                      reflection="You'd like mornings to start outside, walking your dog, most days")
    version = await loader.goal(robin, walk, g.ReviseGoal, "robin:walk:revise", me, 1.2,
                                text="Walk the dog for 20 minutes on 5 mornings a week",
                                facets={"measure": "mornings walked per week", "target": "5 mornings",
                                        "relevant": "I feel more like myself after being outside"},
                                due_date=(loader.at(84)).date())
    for i, (text, day) in enumerate((("Walk to the end of the road", 14), ("Walk to the park and back", 42))):
        await loader.goal(robin, walk, g.AddMilestone, f"robin:walk:milestone:{i}", clin_a, 1.4,
                          milestone_id=demo_id(f"robin:milestone:{i}"), description=text,
                          provisional_date=loader.at(day).date())
    await loader.goal(robin, walk, g.AgreeGoal, "robin:walk:agree-client", me, 1.3, version=version)
    await loader.goal(robin, walk, g.AgreeGoal, "robin:walk:agree-clinician", clin_a, 1.3, version=version)
    await loader.goal(robin, walk, g.NoteBarrier, "robin:walk:barrier", me, 1.5, barrier_id=demo_id("rb1"),
                      text="Dark, rainy mornings")
    await loader.goal(robin, walk, g.PlanContingency, "robin:walk:contingency", me, 1.5,
                      contingency_id=demo_id("rc1"), trigger="It is pouring with rain",
                      response="Walk round the block with an umbrella instead")
    await loader.goal(robin, walk, g.NoteResource, "robin:walk:resource", me, 1.5, resource_id=demo_id("rr1"),
                      text="My neighbour also walks her dog early")
    await loader.goal(robin, walk, g.LinkIntervention, "robin:walk:intervention", clin_a, 1.5,
                      intervention_id=demo_id("ri1"), kind="behavioural_experiment",
                      detail="Rate mood before and after each walk")
    await loader.goal(robin, walk, g.AttachMeasure, "robin:walk:measure", clin_a, 1.6, instrument_id="phq9",
                      schedule=Schedule(kind="every", interval=1, unit="weeks", start=loader.at(1.6).date(),
                                        timezone="Europe/London"))
    await loader.goal(robin, walk, g.ScheduleCheckpoint, "robin:walk:checkpoint", clin_a, 1.6,
                      checkpoint_id=demo_id("robin:checkpoint:1"), provisional_date=loader.at(42).date(),
                      purpose="Look at the walks and PHQ-9 together")
    for week, total in enumerate((18, 17, 15, 14, 12, 11, 10, 9, 8, 8, 7, 6)):
        await loader.measure(robin, f"robin:phq9:{week}", me, 2 + week * 7, "phq9", _phq9(total), (walk,))
        await loader.measure(robin, f"robin:mood:{week}", me, 2.5 + week * 7, "mood_diary",
                             {"mood": min(10, 3 + week // 2)}, (walk,))
    change = demo_id("robin:change:pace")
    await loader.goal(robin, walk, g.ProposeChange, "robin:walk:change", clin_a, 44, change_id=change,
                      kind="due_date", new_date=loader.at(98).date(), rationale="Winter mornings are harder")
    await loader.goal(robin, walk, g.AcceptChange, "robin:walk:change-accept", me, 44.2, change_id=change)
    await loader.goal(robin, walk, g.RecordReview, "robin:walk:review", clin_a, 45,
                      review_id=demo_id("robin:review:1"), outcome="celebrate",
                      checkpoint_id=demo_id("robin:checkpoint:1"), looked_at=("PHQ-9", "walk diary"),
                      client_view="I didn't think I'd manage this many mornings")
    await loader.client(robin, c.GiveFeedback, "robin:feedback", me, 46, feedback_id=demo_id("robin:fb"),
                        text="Having the dog as a reason helps", rating=8, resonates=("small steps",))

    # Sam: a clinician's proposal restated in the client's own words; anxiety measured; a risk flag handled.
    sam = CLIENTS["sam"]
    me = Actor(id=sam, role=Role.CLIENT)
    social = demo_id("goal:sam:social")
    await loader.goal(sam, social, g.ProposeGoal, "sam:social:propose", clin_a, 3,
                      text="Reduce avoidance of social situations through graded exposure")
    version = await loader.goal(sam, social, g.RestateGoal, "sam:social:restate", me, 3.2,
                                client_words="Say yes to one invitation from a friend every fortnight")
    await loader.goal(sam, social, g.AgreeGoal, "sam:social:agree-client", me, 3.3, version=version)
    for week, total in enumerate((14, 13, 13, 11, 10, 9)):
        await loader.measure(sam, f"sam:gad7:{week}", me, 4 + week * 7, "gad7", _gad7(total), (social,))
    await loader.measure(sam, "sam:phq9:0", me, 20, "phq9", _phq9(12, item9=1))
    await loader.client(sam, c.AcknowledgeRiskFlag, "sam:risk-ack", clin_a, 20.1,
                        flag_id=c.risk_flag_id_for(demo_id("measurement:sam:phq9:0")),
                        action_taken="Safety plan reviewed with Sam the same day")

    # Alex: one goal achieved, one paused, a relapse-prevention plan, discharged, self-monitoring continues.
    alex = CLIENTS["alex"]
    me = Actor(id=alex, role=Role.CLIENT)
    clin = clin_b
    sleep = demo_id("goal:alex:sleep")
    cook = demo_id("goal:alex:cook")
    for goal_id, text, key in ((sleep, "Be in bed by 11 on weeknights", "sleep"),
                               (cook, "Cook a proper meal twice a week", "cook")):
        await loader.goal(alex, goal_id, g.ProposeGoal, f"alex:{key}:propose", me, 2, text=text)
        await loader.goal(alex, goal_id, g.AgreeGoal, f"alex:{key}:agree-client", me, 2.1, version=1)
        await loader.goal(alex, goal_id, g.AgreeGoal, f"alex:{key}:agree-clinician", clin, 2.1, version=1)
    for week in range(10):
        await loader.measure(alex, f"alex:sleep:{week}", me, 3 + week * 7, "sleep_quality",
                             {"quality": min(10, 4 + week // 2)}, (sleep,))
    await loader.goal(alex, sleep, g.CloseGoal, "alex:sleep:achieved", clin, 70, outcome="achieved",
                      reason="Bedtime before 11 on most weeknights for six weeks")
    await loader.goal(alex, cook, g.PauseGoal, "alex:cook:pause", me, 50, reason="Moving house this month")
    await loader.client(alex, c.UpdateRelapsePlan, "alex:relapse", me, 72,
                        warning_signs=("Staying up past 1am", "Skipping meals"),
                        actions=("Go back to the 11pm alarm", "Text my sister"), supports=("My sister", "GP"))
    await loader.client(alex, c.DischargeClient, "alex:discharge", clin, 75, reason="Goals met")
    await loader.measure(alex, "alex:sleep:after", me, 82, "sleep_quality", {"quality": 8}, (sleep,))

    # Jo: a declined proposal, a declined change, and consent for measurement withdrawn.
    jo = CLIENTS["jo"]
    me = Actor(id=jo, role=Role.CLIENT)
    gym = demo_id("goal:jo:gym")
    run = demo_id("goal:jo:run")
    await loader.goal(jo, gym, g.ProposeGoal, "jo:gym:propose", clin_b, 5, text="Attend the gym three times a week")
    await loader.goal(jo, gym, g.DeclineGoal, "jo:gym:decline", me, 5.2, reason="Gyms make me anxious")
    await loader.goal(jo, run, g.ProposeGoal, "jo:run:propose", me, 6, text="Go for a short run on Saturdays")
    await loader.goal(jo, run, g.AgreeGoal, "jo:run:agree-client", me, 6.1, version=1)
    await loader.goal(jo, run, g.AgreeGoal, "jo:run:agree-clinician", clin_b, 6.1, version=1)
    change = demo_id("jo:change:target")
    await loader.goal(jo, run, g.ProposeChange, "jo:run:change", clin_b, 20, change_id=change, kind="target",
                      new_text="Run on Saturdays and Wednesdays", rationale="You've managed every Saturday")
    await loader.goal(jo, run, g.DeclineChange, "jo:run:change-decline", me, 20.5, change_id=change,
                      reason="Not yet; Saturdays are enough for now")
    await loader.measure(jo, "jo:confidence:0", me, 7, "confidence", {"confidence": 5}, (run,))
    await loader.client(jo, c.WithdrawConsent, "jo:withdraw", me, 30, scope="measurement", mode="self")


async def load_demo(settings: Settings, *, console: Console, only_if_absent: bool,
                    base_url: str = "http://127.0.0.1:8000") -> None:
    async with open_runtime(settings) as rt:
        exists = await rt.store.stream_version(f"clinic-{TENANT}") > 0
        if not (exists and only_if_absent):
            registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager(settings.plugins_dir))
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=90)
            if exists:  # keep the original timeline so reloading records nothing new
                first = await rt.store.read_stream(f"clinic-{TENANT}", to_version=1)
                start = first[0].occurred_at
            loader = Loader(CommandHandler(rt.store, scorer=registry.score), registry, start)
            with console.status("loading the demo clinic"):
                try:
                    await _load(loader)
                except AllianceError as exc:
                    console.print(f"[red]demo data refused[/red] ({exc.code}) {exc.message}")
                    raise
        before = await _moment_before_agreement(rt)
    _print_tokens(settings, console, base_url, before)


async def _moment_before_agreement(rt: Any) -> datetime:
    """A moment in the demo's own recorded history: after Robin's goal was proposed and revised,
    before both agreed to it (``as_of`` reads what was *recorded* by then, and the demo records
    everything when it loads, so only moments of the load itself show an earlier state)."""
    events = await rt.store.read_stream(g.goal_stream(demo_id("goal:robin:walk")))
    agreed = next(i for i, e in enumerate(events) if e.type == "goal.agreed")
    earlier, then = events[agreed - 1].recorded_at, events[agreed].recorded_at
    return earlier + (then - earlier) / 2


def _print_tokens(settings: Settings, console: Console, base_url: str, before: datetime) -> None:
    """Tokens and paste-ready ``export`` lines. Written as plain text, one line each, whatever
    the terminal: a wrapped or coloured token pasted into a shell would not work."""
    from alliance.api.auth import issue_token

    def say(line: str = "") -> None:
        console.file.write(line + "\n")

    say(f"demo clinic {TENANT} - tokens (valid 8 h):")
    tokens = {}
    for label, var, role, sub in (("admin", "A", Role.ADMIN, ADMIN), ("clinician A", "K", Role.CLINICIAN, CLIN_A),
                                  ("auditor", "U", Role.AUDITOR, AUDITOR),
                                  ("client Robin", "T", Role.CLIENT, CLIENTS["robin"])):
        tokens[var] = issue_token(settings, tenant=TENANT, role=role, sub=sub)
        say(f"  {label:13} {sub}")
        say(f"    {tokens[var]}")
    say()
    say(f"Robin's goal was proposed and revised, not yet agreed, at {before.isoformat()} (BEFORE below).")
    say("Paste these into the shell you run the walkthrough's curl lines in:")
    say()
    say(f"export B={base_url} C={CLIENTS['robin']} BEFORE={before.astimezone(UTC).isoformat().replace('+00:00', 'Z')}")
    for var in ("T", "K", "A", "U"):
        say(f"export {var}={tokens[var]}")
    say()
    console.file.flush()
