"""Instrument definitions and the scoring helpers every measure shares.

This is the module plugin authors import. An instrument is *data*: a frozen
msgspec Struct that encodes to JSON, so the API can serve it and a frontend can
render it as a form. Scoring is a pure function of a definition and a set of
answers (:func:`score`); an instrument that needs more than totals and
subscales (e.g. Goal Attainment Scaling) declares ``Scoring(method="custom")``
and its plugin implements the ``score_measure`` hook — the callable never sits
on the encoded struct.

Conventions
-----------
* Severity bands and score ranges are inclusive (``0–4`` minimal, ``5–9`` mild).
  A score belongs to the last band whose ``min`` it reaches, so bands over
  non-integer scores may meet at a boundary (``0–2.5``, ``2.5–5``).
* A cut-off is *met* when the score is at or above its value (PHQ-9 caseness:
  total ≥ 10), whatever the instrument's direction.
* ``direction`` says which way is better; change helpers use it to say whether a
  change is an improvement or a deterioration.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import msgspec

from alliance.core.errors import ValidationError

__all__ = [
    "KNOWN_RISK_QUESTIONS",
    "LOINC",
    "RISK_ITEM_UNANSWERED",
    "Band",
    "ChangeResult",
    "ChoiceOption",
    "ChoiceResponse",
    "Coding",
    "CutOff",
    "Direction",
    "FreeTextResponse",
    "InstrumentDefinition",
    "IntegerResponse",
    "Item",
    "KnownRiskQuestion",
    "NumberResponse",
    "Prorating",
    "ReliableChange",
    "Response",
    "RiskItem",
    "ScoreRange",
    "ScoredMeasurement",
    "Scorer",
    "Scoring",
    "Subscale",
    "YesNoResponse",
    "change_from_baseline",
    "clinically_significant_change",
    "compute_fingerprint",
    "crossed_cutoff",
    "cutoff_a",
    "cutoff_b",
    "cutoff_c",
    "definition_problems",
    "gas_t_score",
    "instrument_key",
    "item_codes",
    "known_risk_questions_asked",
    "reliable_change",
    "reliable_change_by_index",
    "reliable_change_by_threshold",
    "reliable_change_index",
    "rescore",
    "score",
    "severity_band",
    "subscale_scores",
    "total",
    "validate_answers",
]

LOINC = "http://loinc.org"

Direction = Literal["higher_is_better", "lower_is_better"]
Number = int | float
AnswerValue = int | float | bool


# --- Responses: what kind of answer an item takes --------------------------------------------

class ChoiceOption(msgspec.Struct, frozen=True, kw_only=True):
    """One labelled answer of a choice item; ``value`` is what is scored and stored."""

    value: int | float
    label: str
    translations: dict[str, str] = {}
    code: str | None = None  # e.g. a LOINC answer code (LA6568-5 "Not at all")


class ChoiceResponse(msgspec.Struct, frozen=True, kw_only=True, tag="choice", tag_field="type"):
    options: tuple[ChoiceOption, ...]


class IntegerResponse(msgspec.Struct, frozen=True, kw_only=True, tag="integer", tag_field="type"):
    min: int
    max: int
    min_label: str | None = None  # anchors a form shows at each end of a 0–10 slider
    max_label: str | None = None
    unit: str | None = None


class NumberResponse(msgspec.Struct, frozen=True, kw_only=True, tag="number", tag_field="type"):
    min: float
    max: float
    unit: str | None = None


class YesNoResponse(msgspec.Struct, frozen=True, kw_only=True, tag="yes_no", tag_field="type"):
    """Answered with ``true``/``false``; scores 1/0 when summed."""


class FreeTextResponse(msgspec.Struct, frozen=True, kw_only=True, tag="free_text",
                       tag_field="type"):
    """Personal words: stored apart from structured answers and never scored."""

    max_length: int = 2000


Response = ChoiceResponse | IntegerResponse | NumberResponse | YesNoResponse | FreeTextResponse


class Item(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    prompt: str
    response: Response
    translations: dict[str, str] = {}  # language tag (BCP 47) → prompt
    required: bool = True


# --- Scoring and interpretation ---------------------------------------------------------------

class Subscale(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    item_ids: tuple[str, ...]


class Scoring(msgspec.Struct, frozen=True, kw_only=True):
    """``sum``: ``total`` is the sum of the listed items (missing optional items count as
    nothing), each subscale the sum of its items. ``custom``: the plugin's ``score_measure``
    hook computes the scores; ``total`` and ``subscales`` then only document what it returns."""

    method: Literal["sum", "custom"] = "sum"
    total: tuple[str, ...] = ()
    subscales: tuple[Subscale, ...] = ()


class ScoreRange(msgspec.Struct, frozen=True, kw_only=True):
    """Range of the total score. ``integer``: every achievable total is a whole number."""

    min: float
    max: float
    integer: bool = True


class Band(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    min: float
    max: float


class CutOff(msgspec.Struct, frozen=True, kw_only=True):
    """A named threshold on the total; met when the total is at or above ``value``."""

    name: str
    value: float
    description: str = ""
    source: str = ""


class ReliableChange(msgspec.Struct, frozen=True, kw_only=True):
    """How this instrument tells a real change from noise.

    ``method`` says which criterion is applied by default (and is shown with the result):
    ``threshold`` (a change of at least ``threshold`` points, as NHS Talking Therapies do) or
    ``index`` (Jacobson–Truax |RCI| > 1.96 from ``reliability`` and the pre-treatment ``sd``).
    """

    method: Literal["threshold", "index"] = "threshold"
    threshold: float | None = None
    reliability: float | None = None
    sd: float | None = None
    source: str = ""


class RiskItem(msgspec.Struct, frozen=True, kw_only=True):
    """An answer that needs follow-up whatever the total (PHQ-9 item 9 > 0)."""

    item_id: str
    operator: Literal[">", ">=", "==", "<", "<="] = ">"
    value: float = 0
    label: str = ""


class Prorating(msgspec.Struct, frozen=True, kw_only=True):
    """How a total is completed when some of its items are unanswered.

    With at most ``max_missing`` items of the total unanswered, the total is the mean of the
    answered items times the number of items (``sum × n / answered``), rounded half up to a
    whole number when the score range is whole numbers, and the measurement says it was
    prorated. More missing than that and the answers are refused. Subscales are not prorated.
    """

    max_missing: int
    source: str = ""


class Coding(msgspec.Struct, frozen=True, kw_only=True):
    """A code for the instrument (``target="panel"``), a score (``"total"``, a subscale id)
    or an item id."""

    system: str
    code: str
    display: str = ""
    target: str = "panel"


class InstrumentDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """A measurement instrument as data. ``fingerprint`` is computed from the content."""

    id: str
    version: str
    title: str
    description: str
    items: tuple[Item, ...]
    scoring: Scoring
    direction: Direction
    score_range: ScoreRange
    bands: tuple[Band, ...] = ()
    cutoffs: tuple[CutOff, ...] = ()
    reliable_change: ReliableChange | None = None
    risk_items: tuple[RiskItem, ...] = ()
    codings: tuple[Coding, ...] = ()
    licence: str = ""
    #: A rating of one goal (GAS, a confidence rating): a measurement must name its goal
    #: (``goal_ids``), and progress counts it for the goals it names only.
    per_goal: bool = False
    #: Prorating for unanswered items of the total; None: a required item must be answered.
    prorating: Prorating | None = None
    #: The words progress is described in, by language (BCP 47 tag, not "en", which is built
    #: in): every key of ``core/projections/plain_words.ENGLISH`` ("name", the sentences, the
    #: months, …) and ``band.<label>`` for each band. Checked at start-up.
    words: dict[str, dict[str, str]] = {}
    fingerprint: str = ""

    def __post_init__(self) -> None:
        # Derived, never trusted from input: a decoded definition gets its real fingerprint.
        msgspec.structs.force_setattr(self, "fingerprint", compute_fingerprint(self))

    @property
    def key(self) -> str:
        return instrument_key(self.id, self.version)

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def cutoff(self, name: str) -> CutOff:
        for cutoff in self.cutoffs:
            if cutoff.name == name:
                return cutoff
        raise KeyError(name)


def instrument_key(instrument_id: str, version: str) -> str:
    """``id@version``: the key of a definition in the fingerprint registry."""
    return f"{instrument_id}@{version}"


def compute_fingerprint(definition: InstrumentDefinition) -> str:
    """sha256 of the canonical JSON of the definition's content (fingerprint excluded).

    Canonical: keys sorted, no whitespace, UTF-8. Any change of wording, values, bands or
    scoring changes the fingerprint; that is how start-up notices a definition changed under
    an existing version.
    """
    content = msgspec.to_builtins(definition)
    content.pop("fingerprint", None)
    # Fields added later are left out while unset, so definitions recorded before they existed
    # keep their fingerprint (a changed fingerprint under a known version stops start-up).
    for name, unset in _LATER_FIELDS.items():
        if content.get(name, unset) == unset:
            content.pop(name, None)
    # ``per_goal`` says what a new rating must name, not what a stored score means: leaving it
    # out keeps every fingerprint recorded before it existed (gas@1 is still gas@1).
    content.pop("per_goal", None)
    canonical = json.dumps(_canonical_numbers(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _words_problems(d: InstrumentDefinition) -> list[str]:
    """A language of ``words`` must be complete: a summary half in one language and half in
    another would be worse than English throughout."""
    from alliance.core.projections.plain_words import REQUIRED_KEYS  # the one list of sentence keys

    problems = []
    for language, words in d.words.items():
        if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", language) or language == "en":
            problems.append(f"words: '{language}' is not a language tag other than 'en'")
            continue
        wanted = REQUIRED_KEYS | {f"band.{b.label}" for b in d.bands}
        missing = sorted(wanted - set(words))
        if missing:
            problems.append(f"words '{language}' lacks {', '.join(missing[:5])}")
        if len(words.get("months", "").split(",")) != 12:
            problems.append(f"words '{language}': months must be 12 names separated by commas")
    return problems


_LATER_FIELDS: dict[str, Any] = {"prorating": None, "words": {}}


def _canonical_numbers(value: Any) -> Any:
    # 3 and 3.0 are the same content: a definition built in code with ``min=0`` and one
    # decoded from JSON as ``0.0`` must share a fingerprint.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_numbers(v) for v in value]
    return value


# --- Known risk questions (recognised whatever file a definition came from) ------------------

class KnownRiskQuestion(msgspec.Struct, frozen=True, kw_only=True):
    """A published question whose answer needs follow-up whatever the total."""

    system: str
    item_code: str
    #: Panel codes of the instruments that ask it (an instrument with one of these asks it).
    panel_codes: tuple[str, ...]
    rule: RiskItem  # item_id left empty: filled with the definition's own item id
    what: str


#: PHQ-9 item 9, "Thoughts that you would be better off dead, or of hurting yourself in some
#: way" (LOINC 44260-8, in panel 44249-1): any answer above 0 needs follow-up (Kroenke,
#: Spitzer & Williams 2001; docs/clinical-sources.md §1).
KNOWN_RISK_QUESTIONS: tuple[KnownRiskQuestion, ...] = (
    KnownRiskQuestion(system=LOINC, item_code="44260-8", panel_codes=("44249-1",),
                      rule=RiskItem(item_id="", operator=">", value=0,
                                    label="Thoughts of being better off dead or of self-harm"),
                      what="PHQ-9 item 9 (thoughts of self-harm, LOINC 44260-8)"),
)

#: Why a measurement is incomplete when a risk question was left unanswered.
RISK_ITEM_UNANSWERED = "risk_item_unanswered"


def item_codes(definition: InstrumentDefinition) -> dict[str, tuple[tuple[str, str], ...]]:
    """Item id → its (system, code) pairs, from the definition's item-level codings."""
    item_ids = {item.id for item in definition.items}
    result: dict[str, tuple[tuple[str, str], ...]] = {}
    for coding in definition.codings:
        if coding.target in item_ids:
            result[coding.target] = (*result.get(coding.target, ()), (coding.system, coding.code))
    return result


def _panel_codes(definition: InstrumentDefinition) -> set[tuple[str, str]]:
    return {(c.system, c.code) for c in definition.codings if c.target == "panel"}


def known_risk_questions_asked(definition: InstrumentDefinition
                               ) -> list[tuple[KnownRiskQuestion, str | None]]:
    """Every known risk question this definition asks, with the item that asks it.

    Recognised by the item's code, by a FHIR-style link id equal to the code ("44260-8" or
    "/44260-8"), or by the instrument's panel code; the item is ``None`` when the panel says
    the question is asked but no item can be identified as it.
    """
    codes = item_codes(definition)
    panels = _panel_codes(definition)
    found: list[tuple[KnownRiskQuestion, str | None]] = []
    for known in KNOWN_RISK_QUESTIONS:
        target = (known.system, known.item_code)
        item_id = next((i for i, pairs in codes.items() if target in pairs), None)
        if item_id is None:
            item_id = next((item.id for item in definition.items
                            if item.id.lstrip("/") == known.item_code), None)
        if item_id is not None or any((known.system, p) in panels for p in known.panel_codes):
            found.append((known, item_id))
    return found


def _risk_rule_problems(definition: InstrumentDefinition) -> list[str]:
    """A definition that asks a known risk question must carry its risk rule."""
    problems: list[str] = []
    declared = {risk.item_id: risk for risk in definition.risk_items}
    for known, item_id in known_risk_questions_asked(definition):
        if item_id is None:
            if not declared:
                problems.append(f"asks {known.what} (by its panel code) but no item is coded "
                                f"{known.item_code} and no risk item is declared")
            continue
        risk = declared.get(item_id)
        if risk is None or (risk.operator, risk.value) != (known.rule.operator, known.rule.value):
            problems.append(f"item '{item_id}' is {known.what}: it needs the risk rule "
                            f"'{known.rule.operator} {known.rule.value:g}'")
    return problems


# --- Checking a definition (start-up runs this on every registration) -------------------------

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: Item ids may be FHIR linkIds ("/44250-9"), so they allow more than instrument ids.
_ITEM_ID = re.compile(r"^[A-Za-z0-9_./-]{1,64}$")


def _item_bounds(item: Item) -> tuple[float, float, bool] | None:
    """(lowest, highest, integer-valued) of an item's scored value; None if not scorable."""
    response = item.response
    if isinstance(response, ChoiceResponse):
        values = [o.value for o in response.options]
        if not values:
            return None
        integer = all(float(v).is_integer() for v in values)
        return min(values), max(values), integer
    if isinstance(response, IntegerResponse):
        return response.min, response.max, True
    if isinstance(response, NumberResponse):
        return response.min, response.max, False
    if isinstance(response, YesNoResponse):
        return 0, 1, True
    return None


def _item_problems(item: Item) -> list[str]:
    response = item.response
    where = f"item '{item.id}'"
    if isinstance(response, ChoiceResponse):
        values = [o.value for o in response.options]
        if len(values) < 2:
            return [f"{where} needs at least two answer options"]
        if len(set(values)) != len(values):
            return [f"{where} has answer options with the same value"]
        if not all(_is_number(v) and math.isfinite(v) for v in values):
            return [f"{where} has an answer option value that is not a finite number"]
        if any(not o.label.strip() for o in response.options):
            return [f"{where} has an answer option without a label"]
    elif isinstance(response, IntegerResponse | NumberResponse):
        if not (math.isfinite(response.min) and math.isfinite(response.max)
                and response.min < response.max):
            return [f"{where} has a bad range {response.min}–{response.max}"]
    elif isinstance(response, FreeTextResponse) and response.max_length < 1:
        return [f"{where} has a bad maximum length"]
    return []


def definition_problems(definition: InstrumentDefinition) -> list[str]:
    """Everything wrong with a definition, in plain words (empty when it is sound).

    Checks ids, items and their ranges, scoring (present, refers to scorable items), that the
    declared score range is what summing the items can give, that bands cover the range
    without gaps or overlaps, cut-offs inside the range, the reliable change criterion, and
    risk items. Plugin authors can call it in their own tests.
    """
    d = definition
    problems: list[str] = []
    if not _ID.match(d.id):
        problems.append(f"id '{d.id}' must be lowercase letters, digits, '_', '.' or '-'")
    if not d.version.strip():
        problems.append("version is empty")
    if not d.title.strip() or not d.description.strip():
        problems.append("title and description must not be empty")
    if not d.items:
        problems.append("has no items")
    ids = [item.id for item in d.items]
    if len(set(ids)) != len(ids):
        problems.append("has two items with the same id")
    for item in d.items:
        if not _ITEM_ID.match(item.id):
            problems.append(f"item id '{item.id}' must be letters, digits, '_', '.', '/', '-'")
        problems.extend(_item_problems(item))
    by_id = {item.id: item for item in d.items}

    def scorable(item_ids: Iterable[str], what: str) -> bool:
        ok = True
        for item_id in item_ids:
            item = by_id.get(item_id)
            if item is None:
                problems.append(f"{what} refers to unknown item '{item_id}'")
                ok = False
            elif _item_bounds(item) is None:
                problems.append(f"{what} refers to item '{item_id}', which cannot be scored")
                ok = False
        return ok

    rng = d.score_range
    if not (math.isfinite(rng.min) and math.isfinite(rng.max) and rng.min < rng.max):
        problems.append(f"score range {rng.min}–{rng.max} is not a range")
        return problems
    subscale_ids = [s.id for s in d.scoring.subscales]
    if len(set(subscale_ids)) != len(subscale_ids) or "total" in subscale_ids:
        problems.append("subscale ids must be unique and not 'total'")
    if d.scoring.method == "sum":
        if not d.scoring.total:
            problems.append("has no scoring: list the items of the total or use custom scoring")
        elif scorable(d.scoring.total, "the total"):
            bounds = [(_item_bounds(by_id[i]), by_id[i].required) for i in d.scoring.total]
            low = sum(b[0] if req else min(0, b[0]) for b, req in bounds if b)
            high = sum(b[1] if req else max(0, b[1]) for b, req in bounds if b)
            if (low, high) != (rng.min, rng.max):
                problems.append(f"score range {rng.min:g}–{rng.max:g} does not match what the "
                                f"items add up to ({low:g}–{high:g})")
            if rng.integer and not all(b[2] for b, _ in bounds if b):
                problems.append("score range says whole numbers but an item of the total "
                                "takes decimals")
        for subscale in d.scoring.subscales:
            if not subscale.item_ids:
                problems.append(f"subscale '{subscale.id}' has no items")
            scorable(subscale.item_ids, f"subscale '{subscale.id}'")
    if d.bands:
        bands = sorted(d.bands, key=lambda b: b.min)
        labels = [b.label for b in bands]
        if len(set(labels)) != len(labels):
            problems.append("two severity bands have the same label")
        if any(b.min > b.max for b in bands):
            problems.append("a severity band has min above max")
        elif bands[0].min != rng.min or bands[-1].max != rng.max:
            problems.append(f"severity bands ({bands[0].min:g}–{bands[-1].max:g}) do not cover "
                            f"the score range ({rng.min:g}–{rng.max:g})")
        else:
            step = 1 if rng.integer else 0
            for before, after in itertools.pairwise(bands):
                if after.min != before.max + step:
                    problems.append(f"severity bands '{before.label}' and '{after.label}' "
                                    "leave a gap or overlap")
    names = [c.name for c in d.cutoffs]
    if len(set(names)) != len(names):
        problems.append("two cut-offs have the same name")
    for cutoff in d.cutoffs:
        if not rng.min <= cutoff.value <= rng.max:
            problems.append(f"cut-off '{cutoff.name}' ({cutoff.value:g}) is outside the range")
    rc = d.reliable_change
    if rc is not None:
        if rc.threshold is not None and not 0 < rc.threshold <= rng.max - rng.min:
            problems.append("reliable change threshold must be above 0 and within the range")
        if rc.reliability is not None and not 0 < rc.reliability < 1:
            problems.append("reliability must be between 0 and 1")
        if rc.sd is not None and not rc.sd > 0:
            problems.append("reliable change SD must be above 0")
        if rc.method == "threshold" and rc.threshold is None:
            problems.append("reliable change by threshold needs a threshold")
        if rc.method == "index" and (rc.reliability is None or rc.sd is None):
            problems.append("reliable change by index needs reliability and SD")
    for risk in d.risk_items:
        scorable([risk.item_id], "a risk item")
    for coding in d.codings:
        if not coding.system or not coding.code:
            problems.append("a coding needs a system and a code")
    panels = [(c.system, c.code) for c in d.codings if c.target == "panel"]
    if len(set(panels)) != len(panels):
        problems.append("declares the same panel code twice")
    problems.extend(_risk_rule_problems(d))
    problems.extend(_words_problems(d))
    if d.prorating is not None:
        if d.scoring.method != "sum":
            problems.append("prorating applies to summed totals only")
        elif not 0 < d.prorating.max_missing < len(d.scoring.total):
            problems.append("prorating max_missing must be at least 1 and fewer than the "
                            "items of the total")
    return problems


# --- A scored measurement ---------------------------------------------------------------------

class ScoredMeasurement(msgspec.Struct, frozen=True, kw_only=True):
    """What scoring produced; the app stores it in ``MeasurementRecorded`` as the record."""

    instrument_id: str
    instrument_version: str
    fingerprint: str
    answers: dict[str, int | float | bool]
    free_text: dict[str, str]
    scores: dict[str, float]
    band: str | None
    #: Risk items whose answer fired their rule.
    risk_items: tuple[str, ...]
    #: Risk items left unanswered (the set is then incomplete and flagged for follow-up).
    risk_unanswered: tuple[str, ...] = ()
    #: Every item of the instrument left unanswered.
    unanswered: tuple[str, ...] = ()
    #: ``"risk_item_unanswered"`` when a risk item was skipped, else None.
    incomplete: str | None = None
    #: True when the total was prorated by the instrument's rule.
    prorated: bool = False
    #: The instrument rates one goal (``per_goal``): a recording must name its goal.
    per_goal: bool = False


#: A custom scorer: (definition, validated answers) → scores including ``"total"``.
Scorer = Callable[[InstrumentDefinition, dict[str, Any]], Mapping[str, float]]


def _invalid(item_id: str, message: str, code: str = "invalid_answer") -> ValidationError:
    return ValidationError(message, code=code, field=f"answers.{item_id}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_answer(item: Item, value: object) -> AnswerValue | str:
    response = item.response
    label = f"Item '{item.id}'"
    if isinstance(response, ChoiceResponse):
        if _is_number(value):
            for option in response.options:
                if value == option.value:
                    return option.value
        allowed = ", ".join(str(o.value) for o in response.options)
        raise _invalid(item.id, f"{label} takes one of {allowed}; got {value!r}.")
    if isinstance(response, IntegerResponse):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(item.id, f"{label} takes a whole number; got {type(value).__name__}.")
        if not response.min <= value <= response.max:
            raise _invalid(item.id, f"{label} takes {response.min} to {response.max}; "
                                    f"got {value}.")
        return value
    if isinstance(response, NumberResponse):
        if not _is_number(value) or not math.isfinite(value):  # type: ignore[arg-type]
            raise _invalid(item.id, f"{label} takes a number; got {type(value).__name__}.")
        if not response.min <= value <= response.max:  # type: ignore[operator]
            raise _invalid(item.id, f"{label} takes {response.min} to {response.max}; "
                                    f"got {value}.")
        return value  # type: ignore[return-value]
    if isinstance(response, YesNoResponse):
        if not isinstance(value, bool):
            raise _invalid(item.id, f"{label} takes true or false; got {type(value).__name__}.")
        return value
    if not isinstance(value, str):
        raise _invalid(item.id, f"{label} takes text; got {type(value).__name__}.")
    if len(value) > response.max_length:
        raise _invalid(item.id, f"{label} takes at most {response.max_length} characters.")
    return value


def validate_answers(definition: InstrumentDefinition, answers: Mapping[str, Any]
                     ) -> tuple[dict[str, AnswerValue], dict[str, str]]:
    """Check every answer against its item; return (structured answers, free-text answers).

    Raises ``ValidationError`` (``field="answers.<item id>"``) with code ``unknown_item``
    for an answer to no item, ``invalid_answer`` for a missing required item, a wrong type or
    an out-of-range value. ``None`` or ``""`` counts as not answered. A risk item may be left
    unanswered (the set is scored as incomplete), and so may as many items of the total as
    the instrument's prorating rule allows.
    """
    structured, free_text, _ = _validated(definition, answers)
    return structured, free_text


def _validated(definition: InstrumentDefinition, answers: Mapping[str, Any]
               ) -> tuple[dict[str, AnswerValue], dict[str, str], list[str]]:
    if not isinstance(answers, Mapping):
        raise ValidationError("Answers must be an object keyed by item id.",
                              code="invalid_answer", field="answers")
    known = {item.id for item in definition.items}
    for item_id in answers:
        if item_id not in known:
            raise _invalid(str(item_id), f"'{item_id}' is not an item of {definition.title}.",
                           code="unknown_item")
    structured: dict[str, AnswerValue] = {}
    free_text: dict[str, str] = {}
    risk_ids = {risk.item_id for risk in definition.risk_items}
    proratable = set(definition.scoring.total) if definition.prorating is not None else set()
    allowed = definition.prorating.max_missing if definition.prorating is not None else 0
    unanswered: list[str] = []
    missing_required = 0  # required items of the total left out, risk items aside
    for item in definition.items:
        value = answers.get(item.id)
        if value is None or value == "":
            unanswered.append(item.id)
            # A skipped risk question is kept (and flagged), never refused: refusing would lose
            # the other answers and the signal that it was skipped.
            if not item.required or item.id in risk_ids:
                continue
            if item.id not in proratable:
                raise _invalid(item.id, f"Item '{item.id}' needs an answer.")
            missing_required += 1
            if missing_required > allowed:
                raise _invalid(item.id, f"Item '{item.id}' needs an answer: at most {allowed} "
                                        "items of the total may be left out.")
            continue
        checked = _check_answer(item, value)
        if isinstance(item.response, FreeTextResponse):
            free_text[item.id] = checked  # type: ignore[assignment]
        else:
            structured[item.id] = checked  # type: ignore[assignment]
    return structured, free_text, unanswered


def _risk_fired(risk: RiskItem, value: float) -> bool:
    match risk.operator:
        case ">":
            return value > risk.value
        case ">=":
            return value >= risk.value
        case "==":
            return value == risk.value
        case "<":
            return value < risk.value
        case "<=":
            return value <= risk.value
    return False  # pragma: no cover - Literal is exhaustive


def _sum_scores(definition: InstrumentDefinition, structured: Mapping[str, AnswerValue]
                ) -> dict[str, float]:
    scores = {"total": total(structured.get(i) for i in definition.scoring.total)}
    scores.update(subscale_scores(structured, definition.scoring.subscales))
    return scores


def rescore(definition: InstrumentDefinition, answers: Mapping[str, Any], *,
            scorer: Scorer | None = None) -> dict[str, float]:
    """The scores for a set of answers (what ``alliance verify --scores`` compares)."""
    return score(definition, answers, scorer=scorer).scores


def score(definition: InstrumentDefinition, answers: Mapping[str, Any], *,
          scorer: Scorer | None = None) -> ScoredMeasurement:
    """Validate ``answers`` and score them with ``definition``. Pure: no I/O, no clock.

    ``scorer`` is required for ``Scoring(method="custom")``; the registry passes the owning
    plugin's ``score_measure`` wrapped in the failure guard. Validation happens first, so a
    custom scorer only ever sees valid answers.
    """
    structured, free_text, unanswered = _validated(definition, answers)
    prorated = False
    if definition.scoring.method == "custom":
        if scorer is None:
            raise ValueError(f"{definition.key} uses custom scoring: pass its scorer")
        raw = scorer(definition, {**structured, **free_text})
        scores = {str(k): float(v) for k, v in raw.items()}
    else:
        scores = _sum_scores(definition, structured)
        prorated_total = _prorated_total(definition, structured)
        if prorated_total is not None:
            scores["total"], prorated = prorated_total, True
    fired = tuple(
        risk.item_id for risk in definition.risk_items
        if risk.item_id in structured and _risk_fired(risk, float(structured[risk.item_id]))
    )
    risk_unanswered = tuple(risk.item_id for risk in definition.risk_items
                            if risk.item_id in unanswered)
    # A total missing a risk item's answer and not completed by prorating is only a partial
    # sum: it gets no band, so it can never read as a severity it may understate.
    partial = bool(risk_unanswered) and not prorated and any(
        item_id in definition.scoring.total for item_id in risk_unanswered)
    return ScoredMeasurement(
        instrument_id=definition.id,
        instrument_version=definition.version,
        fingerprint=definition.fingerprint,
        answers=structured,
        free_text=free_text,
        scores=scores,
        band=None if partial else severity_band(definition.bands, scores["total"]),
        risk_items=fired,
        risk_unanswered=risk_unanswered,
        unanswered=tuple(unanswered),
        incomplete=RISK_ITEM_UNANSWERED if risk_unanswered else None,
        prorated=prorated,
        per_goal=definition.per_goal,
    )


def _prorated_total(definition: InstrumentDefinition, structured: Mapping[str, AnswerValue]
                    ) -> float | None:
    """The prorated total when the rule applies and items of the total are missing."""
    rule = definition.prorating
    items = definition.scoring.total
    answered = [structured[i] for i in items if structured.get(i) is not None]
    # More missing than the rule allows (a skipped risk item counted too): no prorating, the
    # total stays a partial sum and says so.
    if rule is None or not answered or len(answered) == len(items) \
            or len(items) - len(answered) > rule.max_missing:
        return None
    value = total(answered) * len(items) / len(answered)
    if definition.score_range.integer:
        value = float(math.floor(value + 0.5))
    return min(max(value, definition.score_range.min), definition.score_range.max)


# --- Scoring helpers --------------------------------------------------------------------------

def total(values: Iterable[AnswerValue | None]) -> float:
    """Sum of the answered values (``True`` counts 1; unanswered ``None`` counts nothing)."""
    return float(sum(float(v) for v in values if v is not None))


def subscale_scores(answers: Mapping[str, AnswerValue], subscales: Iterable[Subscale]
                    ) -> dict[str, float]:
    """Each subscale's sum; a subscale none of whose items was answered is left out."""
    result: dict[str, float] = {}
    for subscale in subscales:
        values = [answers[i] for i in subscale.item_ids if answers.get(i) is not None]
        if values:
            result[subscale.id] = total(values)
    return result


def severity_band(bands: Iterable[Band], value: float) -> str | None:
    """Label of the band ``value`` falls in (the last whose ``min`` it reaches), else None."""
    reached = [band for band in sorted(bands, key=lambda b: b.min) if band.min <= value]
    if reached and value <= reached[-1].max:
        return reached[-1].label
    return None


def change_from_baseline(baseline: float, current: float) -> float:
    """``current − baseline`` (negative on PHQ-9 means fewer symptoms)."""
    return current - baseline


ChangeLabel = Literal["improved", "deteriorated", "no_reliable_change"]


def _classify(change: float, direction: Direction, reliable: bool) -> ChangeLabel:
    if not reliable or change == 0:
        return "no_reliable_change"
    better = change < 0 if direction == "lower_is_better" else change > 0
    return "improved" if better else "deteriorated"


def reliable_change_by_threshold(baseline: float, current: float, threshold: float,
                                 direction: Direction) -> ChangeLabel:
    """Reliable when the change is at least ``threshold`` points (NHS TT: PHQ-9 6, GAD-7 4)."""
    change = change_from_baseline(baseline, current)
    return _classify(change, direction, abs(change) >= threshold)


def reliable_change_index(baseline: float, current: float, sd: float, reliability: float
                          ) -> float:
    """Jacobson–Truax RCI = (x2 − x1) / S_diff, S_diff = √2·SE, SE = SD·√(1 − r)."""
    s_diff = math.sqrt(2) * sd * math.sqrt(1 - reliability)
    return (current - baseline) / s_diff


def reliable_change_by_index(baseline: float, current: float, sd: float, reliability: float,
                             direction: Direction) -> ChangeLabel:
    """Reliable when |RCI| > 1.96 (Jacobson & Truax 1991)."""
    rci = reliable_change_index(baseline, current, sd, reliability)
    return _classify(current - baseline, direction, abs(rci) > 1.96)


class ChangeResult(msgspec.Struct, frozen=True, kw_only=True):
    """A change between two totals, with the criterion that was applied (so it can be shown)."""

    change: float
    method: Literal["threshold", "index"]
    status: ChangeLabel
    rci: float | None = None
    threshold: float | None = None


def reliable_change(definition: InstrumentDefinition, baseline: float, current: float, *,
                    method: Literal["threshold", "index"] | None = None,
                    sd: float | None = None) -> ChangeResult:
    """Reliable change by the instrument's declared criterion (or ``method``).

    ``sd`` overrides the declared pre-treatment SD for the index (services use their own
    population's SD). Raises ``ValueError`` if the criterion lacks what it needs.
    """
    spec = definition.reliable_change
    if spec is None:
        raise ValueError(f"{definition.key} declares no reliable change criterion")
    method = method or spec.method
    change = change_from_baseline(baseline, current)
    if method == "threshold":
        if spec.threshold is None:
            raise ValueError(f"{definition.key} declares no reliable change threshold")
        status = reliable_change_by_threshold(baseline, current, spec.threshold,
                                              definition.direction)
        return ChangeResult(change=change, method="threshold", status=status,
                            threshold=spec.threshold)
    sd = sd if sd is not None else spec.sd
    if spec.reliability is None or sd is None:
        raise ValueError(f"{definition.key} needs reliability and SD for the change index")
    rci = reliable_change_index(baseline, current, sd, spec.reliability)
    status = reliable_change_by_index(baseline, current, sd, spec.reliability,
                                      definition.direction)
    return ChangeResult(change=change, method="index", status=status, rci=rci)


def cutoff_a(mean_clinical: float, sd_clinical: float) -> float:
    """Cut-off *a*: two SDs beyond the clinical mean (``M_clin − 2·SD_clin``)."""
    return mean_clinical - 2 * sd_clinical


def cutoff_b(mean_functional: float, sd_functional: float) -> float:
    """Cut-off *b*: within two SDs of the functional mean (``M_func + 2·SD_func``)."""
    return mean_functional + 2 * sd_functional


def cutoff_c(mean_clinical: float, sd_clinical: float, mean_functional: float,
             sd_functional: float) -> float:
    """Cut-off *c*: ``(SD_clin·M_func + SD_func·M_clin) / (SD_clin + SD_func)``."""
    return ((sd_clinical * mean_functional + sd_functional * mean_clinical)
            / (sd_clinical + sd_functional))


def crossed_cutoff(baseline: float, current: float, cutoff: float, direction: Direction
                   ) -> bool:
    """Moved from the clinical to the non-clinical side of ``cutoff``.

    Lower is better: from ``≥ cutoff`` to ``< cutoff`` (NHS TT recovery: PHQ-9 from ≥ 10 to
    < 10). Higher is better: from ``< cutoff`` to ``≥ cutoff``.
    """
    if direction == "lower_is_better":
        return baseline >= cutoff > current
    return baseline < cutoff <= current


CSCLabel = Literal["recovered", "improved", "no_reliable_change", "deteriorated"]


def clinically_significant_change(baseline: float, current: float, *,
                                  cutoff: float | str,
                                  reliable: ChangeLabel,
                                  direction: Direction,
                                  definition: InstrumentDefinition | None = None) -> CSCLabel:
    """Jacobson–Truax categories: *recovered* = reliably improved **and** crossed the cut-off.

    ``cutoff`` is a number (e.g. from :func:`cutoff_a`/``b``/``c``) or the name of one of the
    definition's cut-offs (``"caseness"``). ``reliable`` is the result of a reliable change
    helper, so the criterion applied stays the caller's choice.
    """
    if isinstance(cutoff, str):
        if definition is None:
            raise ValueError("a named cut-off needs the definition")
        cutoff = definition.cutoff(cutoff).value
    if reliable == "improved" and crossed_cutoff(baseline, current, cutoff, direction):
        return "recovered"
    return reliable


def gas_t_score(levels_and_weights: Iterable[int | float | tuple[float, float]],
                rho: float = 0.3) -> float:
    """Kiresuk–Sherman summary T-score over goals.

    ``T = 50 + 10·Σwᵢxᵢ / √((1−ρ)·Σwᵢ² + ρ·(Σwᵢ)²)``; each entry is a level ``x`` (−2…+2,
    weight 1) or a ``(level, weight)`` pair. All goals at 0 → 50.
    """
    pairs = [(float(e[0]), float(e[1])) if isinstance(e, tuple) else (float(e), 1.0)
             for e in levels_and_weights]
    if not pairs:
        raise ValueError("GAS T-score needs at least one goal")
    for level, weight in pairs:
        if not -2 <= level <= 2:
            raise ValueError(f"GAS level {level} is outside −2…+2")
        if weight <= 0:
            raise ValueError("GAS weights must be positive")
    weighted = sum(w * x for x, w in pairs)
    sum_w = sum(w for _, w in pairs)
    sum_w2 = sum(w * w for _, w in pairs)
    return 50 + 10 * weighted / math.sqrt((1 - rho) * sum_w2 + rho * sum_w ** 2)
