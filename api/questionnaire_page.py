"""The one-time questionnaire page: plain HTML rendered from an instrument's definition.

No JavaScript, no stylesheet from elsewhere, no framework: a ``<form method="post">`` with a
``<fieldset>`` and ``<label>`` per item, native radio buttons and number fields, so it works
in any browser, with a screen reader, and with scripts off. It shows the instrument's own
title and questions and nothing about the person: no name, no past answers.
"""

from __future__ import annotations

from html import escape
from typing import Any
from uuid import UUID

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

#: Sent with every answer of the page: no referrer (the token is in the URL), no caching, no
#: framing, nothing loaded from anywhere but Alliance itself.
HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}


def _page(title: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta name=\"referrer\" content=\"no-referrer\">\n"
            f"<title>{escape(title)}</title>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def _item(item: Item, index: int, value: str | None) -> str:
    name = f"answer.{item.id}"
    required = " required" if item.required and not isinstance(item.response, FreeTextResponse) else ""
    prompt = escape(item.prompt)
    response = item.response
    if isinstance(response, ChoiceResponse | YesNoResponse):
        options = ([(str(o.value), o.label) for o in response.options] if isinstance(response, ChoiceResponse)
                   else [("yes", "Yes"), ("no", "No")])
        radios = "\n".join(
            f'<div><input type="radio" id="q{index}-{n}" name="{escape(name)}" value="{escape(v)}"'
            f'{" checked" if value == v else ""}{required if n == 0 else ""}>'
            f' <label for="q{index}-{n}">{escape(label)}</label></div>'
            for n, (v, label) in enumerate(options))
        return f"<fieldset>\n<legend>{index}. {prompt}</legend>\n{radios}\n</fieldset>"
    field_id = f"q{index}"
    shown = "" if value is None else f' value="{escape(value)}"'
    if isinstance(response, IntegerResponse | NumberResponse):
        step = "1" if isinstance(response, IntegerResponse) else "any"
        hint = ""
        if isinstance(response, IntegerResponse) and (response.min_label or response.max_label):
            hint = (f"<small>{response.min:g} = {escape(response.min_label or '')}, "
                    f"{response.max:g} = {escape(response.max_label or '')}</small>")
        return (f'<p><label for="{field_id}">{index}. {prompt}</label><br>{hint}\n'
                f'<input type="number" id="{field_id}" name="{escape(name)}" min="{response.min:g}" '
                f'max="{response.max:g}" step="{step}"{shown}{required}></p>')
    assert isinstance(response, FreeTextResponse)
    text = "" if value is None else escape(value)
    return (f'<p><label for="{field_id}">{index}. {prompt}</label><br>\n'
            f'<textarea id="{field_id}" name="{escape(name)}" maxlength="{response.max_length}" rows="4">'
            f"{text}</textarea></p>")


def form_page(definition: InstrumentDefinition, *, action: str, administration_id: UUID,
              error: str | None = None, values: dict[str, str] | None = None) -> str:
    """The questionnaire as a form posting to ``action`` (the page's own address)."""
    values = values or {}
    items = "\n".join(_item(item, i, values.get(item.id)) for i, item in enumerate(definition.items, start=1))
    problem = f'<p role="alert"><strong>{escape(error)}</strong></p>\n' if error else ""
    body = (f"<h1>{escape(definition.title)}</h1>\n<p>{escape(definition.description)}</p>\n{problem}"
            f'<form method="post" action="{escape(action)}">\n'
            f'<input type="hidden" name="administration_id" value="{administration_id}">\n{items}\n'
            '<p><button type="submit">Send my answers</button></p>\n</form>\n'
            "<p><small>This link works once. Your answers go to your care team.</small></p>")
    return _page(definition.title, body)


def message_page(title: str, text: str, *, crisis: dict[str, Any] | None = None) -> str:
    """A page that says one thing (thank you, or why the link cannot be used); with ``crisis``,
    the clinic's crisis information comes first."""
    parts = []
    if crisis is not None:
        contacts = "".join(f"<li>{escape(str(c))}</li>" for c in crisis.get("contacts") or [])
        parts.append(f'<section role="alert" aria-labelledby="crisis">\n<h2 id="crisis">If you need help now</h2>\n'
                     f"<p>{escape(str(crisis.get('text') or ''))}</p>\n"
                     + (f"<ul>{contacts}</ul>\n" if contacts else "") + "</section>")
    parts.append(f"<h1>{escape(title)}</h1>\n<p>{escape(text)}</p>")
    return _page(title, "\n".join(parts))


def answers_from_form(definition: InstrumentDefinition, fields: dict[str, str]) -> dict[str, Any]:
    """The form's ``answer.<item>`` fields as the instrument's answers (numbers, true/false,
    text); an empty field is left out (unanswered). Anything not a number where one is
    expected is refused naming the item; ranges and options are the instrument's to check."""
    answers: dict[str, Any] = {}
    for item in definition.items:
        raw = fields.get(f"answer.{item.id}")
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        response = item.response
        field = f"answers.{item.id}"
        if isinstance(response, FreeTextResponse):
            answers[item.id] = raw
        elif isinstance(response, YesNoResponse):
            if raw not in ("yes", "no"):
                raise ValidationError("Answer yes or no.", code="invalid_answer", field=field)
            answers[item.id] = raw == "yes"
        else:
            try:
                number = float(raw)
            except ValueError:
                raise ValidationError("This answer must be a number.", code="invalid_answer", field=field) from None
            answers[item.id] = int(number) if number.is_integer() else number
    return answers
