"""A FHIR Questionnaire (R4/R4B/R5 JSON) as an instrument definition.

Drop ``my-scale.json`` into the plugins directory and it becomes a measure, validated at
start-up like any other. What is read (see ``docs/plugins.md`` for a full example):

* ``id`` (else ``name``), lower-cased → instrument id; ``version`` (required); ``title``;
  ``description`` (else the title); ``copyright`` → licence note; ``code`` → codings.
* Items, groups flattened: ``choice``/``coding`` items whose every ``answerOption`` carries
  an ordinal value — the ``itemWeight`` (R5), ``ordinalValue`` (R4) or ``iso21090-CO-value``
  extension, on the option or on its ``valueCoding``; ``valueInteger`` options score their
  own value. ``integer``/``decimal`` items need the ``minValue`` and ``maxValue``
  extensions; ``boolean`` → yes/no; ``string``/``text`` → free text; ``display`` skipped.
  Prompt translations come from the ``translation`` extension on ``_text``.
* Item ``code`` entries become item-level codings (so a LOINC-coded item is recognised).
* Total = sum of the choice items, except items marked ``not-scored`` and known unscored
  questions (PHQ-9's difficulty question, LOINC 69722-7). ``required`` is read as FHIR says
  (default false).
* Alliance extensions (base ``https://alliance.example/fhir/StructureDefinition/``):
  ``severity-bands`` (repeatable; sub-extensions ``label``, ``min``, ``max``),
  ``score-direction`` (``valueCode``: ``lower_is_better`` — the default — or
  ``higher_is_better``), ``cut-off`` (repeatable; ``name``, ``value``), ``reliable-change``
  (``threshold``, ``reliability``, ``sd``, ``method``), ``prorating`` (``valueInteger``: how
  many items of the total may be left unanswered and the total prorated), ``no-risk-items``
  (``valueBoolean`` true: the clinic states that no item asks about risk); on an item
  ``risk-above`` (``valueDecimal``: the item fires a risk flag when its value is above it)
  and ``not-scored`` (``valueBoolean`` true: recorded, not counted in the total).

Risk can never be missed: a Questionnaire asking a known risk question (PHQ-9 item 9, by its
LOINC item code 44260-8 or the PHQ-9 panel code 44249-1) gets that question's risk rule
whatever its extensions say; any other Questionnaire must declare its risk items
(``risk-above``) or declare ``no-risk-items``, or it is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import msgspec

from alliance.core.errors import ConfigurationError
from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    LOINC,
    Band,
    ChoiceOption,
    ChoiceResponse,
    Coding,
    CutOff,
    Direction,
    FreeTextResponse,
    InstrumentDefinition,
    IntegerResponse,
    Item,
    NumberResponse,
    Prorating,
    ReliableChange,
    Response,
    RiskItem,
    ScoreRange,
    Scoring,
    YesNoResponse,
    known_risk_questions_asked,
)

ALLIANCE_SD = "https://alliance.example/fhir/StructureDefinition/"
SEVERITY_BANDS = ALLIANCE_SD + "severity-bands"
SCORE_DIRECTION = ALLIANCE_SD + "score-direction"
CUT_OFF = ALLIANCE_SD + "cut-off"
RELIABLE_CHANGE = ALLIANCE_SD + "reliable-change"
RISK_ABOVE = ALLIANCE_SD + "risk-above"
NO_RISK_ITEMS = ALLIANCE_SD + "no-risk-items"
PRORATING = ALLIANCE_SD + "prorating"
NOT_SCORED = ALLIANCE_SD + "not-scored"

#: Questions that are asked but never part of the total, by (system, code): PHQ-9's
#: "How difficult have these problems made it ..." (LOINC 69722-7; Kroenke 2001: not scored).
KNOWN_UNSCORED = frozenset({(LOINC, "69722-7")})

FHIR_SD = "http://hl7.org/fhir/StructureDefinition/"
ORDINAL_URLS = (FHIR_SD + "itemWeight", FHIR_SD + "ordinalValue", FHIR_SD + "iso21090-CO-value")
MIN_VALUE = FHIR_SD + "minValue"
MAX_VALUE = FHIR_SD + "maxValue"
TRANSLATION = FHIR_SD + "translation"


class QuestionnaireError(ValueError):
    """The Questionnaire cannot be turned into an instrument (the message says why)."""


def _extensions(element: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in element.get("extension", []) if isinstance(e, dict) and e.get("url") == url]


def _value(extension: dict[str, Any]) -> Any:
    for key, value in extension.items():
        if key.startswith("value"):
            return value
    return None


def _sub(extension: dict[str, Any], name: str) -> Any:
    found = _extensions(extension, name)
    return _value(found[0]) if found else None


def _number(value: Any, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QuestionnaireError(f"{what} must be a number")
    return int(value) if float(value).is_integer() else float(value)


def _ordinal(option: dict[str, Any]) -> int | float | None:
    for holder in (option, option.get("valueCoding") or {}):
        for url in ORDINAL_URLS:
            found = _extensions(holder, url)
            if found:
                return _number(_value(found[0]), "an ordinal value")
    if "valueInteger" in option:
        return _number(option["valueInteger"], "valueInteger")
    return None


def _translations(item: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = {}
    for extension in _extensions(item.get("_text") or {}, TRANSLATION):
        lang, content = _sub(extension, "lang"), _sub(extension, "content")
        if isinstance(lang, str) and isinstance(content, str):
            result[lang] = content
    return result


def _choice(item: dict[str, Any], link_id: str) -> ChoiceResponse:
    options = []
    for option in item.get("answerOption", []):
        value = _ordinal(option)
        if value is None:
            raise QuestionnaireError(f"item '{link_id}': every answer option needs an ordinal "
                                     "value (itemWeight or ordinalValue extension)")
        coding = option.get("valueCoding") or {}
        label = coding.get("display") or option.get("valueString") or coding.get("code")
        options.append(ChoiceOption(value=value, label=str(label if label is not None else value),
                                    code=coding.get("code")))
    if not options:
        raise QuestionnaireError(f"item '{link_id}': a choice item needs answerOption entries "
                                 "(answerValueSet is not supported)")
    return ChoiceResponse(options=tuple(options))


def _bounds(item: dict[str, Any], link_id: str) -> tuple[int | float, int | float]:
    low, high = _extensions(item, MIN_VALUE), _extensions(item, MAX_VALUE)
    if not low or not high:
        raise QuestionnaireError(f"item '{link_id}': a number item needs the minValue and "
                                 "maxValue extensions")
    return _number(_value(low[0]), "minValue"), _number(_value(high[0]), "maxValue")


def _response(item: dict[str, Any], link_id: str) -> Response:
    kind = item.get("type")
    if kind in ("choice", "coding", "open-choice"):
        return _choice(item, link_id)
    if kind == "integer":
        low, high = _bounds(item, link_id)
        return IntegerResponse(min=int(low), max=int(high))
    if kind in ("decimal", "quantity"):
        low, high = _bounds(item, link_id)
        return NumberResponse(min=float(low), max=float(high))
    if kind == "boolean":
        return YesNoResponse()
    if kind in ("string", "text"):
        return FreeTextResponse(max_length=int(item.get("maxLength", 2000)))
    raise QuestionnaireError(f"item '{link_id}': type '{kind}' is not supported")


class _Read:
    """What walking the items collects beside the items themselves."""

    def __init__(self) -> None:
        self.risks: list[RiskItem] = []
        self.codings: list[Coding] = []
        self.unscored: set[str] = set()


def _items(items: list[dict[str, Any]], read: _Read) -> list[Item]:
    result: list[Item] = []
    for item in items:
        link_id = str(item.get("linkId", ""))
        kind = item.get("type")
        if kind == "group":
            result.extend(_items(item.get("item", []), read))
            continue
        if kind == "display":
            continue
        result.append(Item(id=link_id, prompt=str(item.get("text") or link_id),
                           response=_response(item, link_id), translations=_translations(item),
                           required=bool(item.get("required", False))))
        for code in item.get("code", []) or []:
            if isinstance(code, dict) and code.get("system") and code.get("code"):
                read.codings.append(Coding(system=str(code["system"]), code=str(code["code"]),
                                           display=str(code.get("display", "")), target=link_id))
                if (code["system"], code["code"]) in KNOWN_UNSCORED:
                    read.unscored.add(link_id)
        if any(_value(e) is True for e in _extensions(item, NOT_SCORED)):
            read.unscored.add(link_id)
        for extension in _extensions(item, RISK_ABOVE):
            read.risks.append(RiskItem(item_id=link_id, operator=">",
                                       value=_number(_value(extension), "risk-above"),
                                       label=str(item.get("text") or link_id)))
        if item.get("item"):
            result.extend(_items(item["item"], read))
    return result


def _classified_risks(definition: InstrumentDefinition, declared_none: bool
                      ) -> tuple[RiskItem, ...]:
    """The risk items, with every known risk question's rule applied (or a refusal)."""
    risks = {risk.item_id: risk for risk in definition.risk_items}
    known = known_risk_questions_asked(definition)
    for question, item_id in known:
        if item_id is None:
            raise QuestionnaireError(
                f"it is recognised by its panel code as asking {question.what}, but no item "
                f"carries the code {question.item_code}: code that item so its risk rule applies")
        # The known rule wins over a declared one: a clinic's looser threshold must not hide
        # an answer the published instrument says needs follow-up.
        risks[item_id] = msgspec.structs.replace(question.rule, item_id=item_id)
    if declared_none and risks:
        raise QuestionnaireError("it declares no-risk-items but has risk items ("
                                 + ", ".join(sorted(risks)) + ")")
    if not risks and not declared_none:
        raise QuestionnaireError(
            "Alliance cannot tell whether it asks about risk: mark each risk item with the "
            f"'{RISK_ABOVE}' extension, or declare that it has none with '{NO_RISK_ITEMS}' "
            "(valueBoolean true)")
    return tuple(risks[i] for i in (item.id for item in definition.items) if i in risks)


def questionnaire_to_definition(resource: dict[str, Any]) -> InstrumentDefinition:
    """Turn a FHIR Questionnaire (parsed JSON) into an instrument definition.

    Raises :class:`QuestionnaireError` when it cannot be scored. The definition is not
    validated here; the registry does that at start-up like for any plugin.
    """
    if not isinstance(resource, dict) or resource.get("resourceType") != "Questionnaire":
        raise QuestionnaireError("not a FHIR Questionnaire (resourceType)")
    instrument_id = str(resource.get("id") or resource.get("name") or "").lower()
    if not instrument_id:
        raise QuestionnaireError("needs an id or a name")
    version = resource.get("version")
    if not version:
        raise QuestionnaireError("needs a version (definitions are pinned by version)")
    read = _Read()
    items = _items(resource.get("item", []), read)
    total = tuple(item.id for item in items if isinstance(item.response, ChoiceResponse)
                  and item.id not in read.unscored)
    low = high = 0.0
    integer = True
    for item in items:
        if item.id in total:
            values = [o.value for o in item.response.options]  # type: ignore[union-attr]
            low += min(values) if item.required else min(0, *values)
            high += max(values) if item.required else max(0, *values)
            integer = integer and all(float(v).is_integer() for v in values)
    bands = tuple(
        Band(label=str(_sub(e, "label")), min=_number(_sub(e, "min"), "band min"),
             max=_number(_sub(e, "max"), "band max"))
        for e in _extensions(resource, SEVERITY_BANDS))
    direction_ext = _extensions(resource, SCORE_DIRECTION)
    direction: Direction = "lower_is_better"
    if direction_ext:
        given = _value(direction_ext[0])
        if given not in ("lower_is_better", "higher_is_better"):
            raise QuestionnaireError(f"score-direction '{given}' is not lower_is_better or higher_is_better")
        direction = given
    cutoffs = tuple(CutOff(name=str(_sub(e, "name")), value=_number(_sub(e, "value"), "cut-off"))
                    for e in _extensions(resource, CUT_OFF))
    reliable = None
    if found := _extensions(resource, RELIABLE_CHANGE):
        spec = found[0]

        def decimal(name: str) -> float | None:
            value = _sub(spec, name)
            return None if value is None else float(_number(value, name))

        threshold = decimal("threshold")
        method: Literal["threshold", "index"] = "threshold" if threshold is not None else "index"
        if (given_method := _sub(spec, "method")) is not None:
            if given_method not in ("threshold", "index"):
                raise QuestionnaireError(f"reliable-change method '{given_method}' is not threshold or index")
            method = given_method
        reliable = ReliableChange(method=method, threshold=threshold, reliability=decimal("reliability"),
                                  sd=decimal("sd"))
    codings = tuple(Coding(system=str(c.get("system", "")), code=str(c.get("code", "")),
                           display=str(c.get("display", "")), target="panel")
                    for c in resource.get("code", []))
    prorating = None
    if found := _extensions(resource, PRORATING):
        max_missing = _value(found[0])
        if isinstance(max_missing, bool) or not isinstance(max_missing, int):
            raise QuestionnaireError("prorating needs valueInteger (how many items may be missing)")
        prorating = Prorating(max_missing=max_missing)
    declared_none = any(_value(e) is True for e in _extensions(resource, NO_RISK_ITEMS))
    definition = InstrumentDefinition(
        id=instrument_id,
        version=str(version),
        title=str(resource.get("title") or resource.get("name") or instrument_id),
        description=str(resource.get("description") or resource.get("title") or instrument_id),
        items=tuple(items),
        scoring=Scoring(method="sum", total=total),
        direction=direction,
        score_range=ScoreRange(min=low, max=high, integer=integer),
        bands=bands,
        cutoffs=cutoffs,
        reliable_change=reliable,
        risk_items=tuple(read.risks),
        codings=(*codings, *read.codings),
        licence=str(resource.get("copyright") or ""),
        prorating=prorating,
    )
    return msgspec.structs.replace(definition,
                                   risk_items=_classified_risks(definition, declared_none))


class QuestionnairePlugin:
    """A plugin object carrying one definition read from a Questionnaire file."""

    def __init__(self, definition: InstrumentDefinition, *, source: str) -> None:
        self.definition = definition
        self.source = source

    @hookimpl
    def register_measures(self) -> list[InstrumentDefinition]:
        return [self.definition]

    def __repr__(self) -> str:
        return f"<QuestionnairePlugin {self.definition.key} from {self.source}>"


def questionnaire_plugin(path: Path, *, plugin_name: str | None = None) -> QuestionnairePlugin:
    """Read a Questionnaire JSON file; a problem is a ``ConfigurationError`` naming the file."""
    name = plugin_name or path.name
    try:
        resource = json.loads(path.read_text(encoding="utf-8"))
        definition = questionnaire_to_definition(resource)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(f"Plugin '{name}': FHIR Questionnaire '{path.name}' cannot be "
                                 f"used: {exc}", code="plugin_invalid", plugin=name) from exc
    return QuestionnairePlugin(definition, source=str(path))
