// A questionnaire form generated from the instrument's definition (GET /instruments): one
// fieldset of radio buttons per choice item with the instrument's own answer anchors, a range
// with its end labels for 0–10 items, in the person's language where the instrument has it.
import { h, nextId } from "./dom.js";

const languages = () => [...(navigator.languages || [navigator.language || "en"])];

export function translated(text, translations) {
  for (const tag of languages()) {
    const exact = translations?.[tag];
    if (exact) return exact;
    const base = translations?.[tag.split("-")[0]];
    if (base) return base;
  }
  return text;
}

// True when this answer is one the instrument names as a risk answer (e.g. PHQ-9 item 9 above 0).
export function isRiskAnswer(definition, itemId, value) {
  return (definition.risk_items || []).some((r) => r.item_id === itemId && compare(value, r.operator, r.value));
}

function compare(a, op, b) {
  switch (op) {
    case ">": return a > b;
    case ">=": return a >= b;
    case "<": return a < b;
    case "<=": return a <= b;
    case "==": return a === b;
    default: return false;
  }
}

export function instrumentForm(definition, { onRiskAnswer, onSubmit, submitLabel = "Save my answers" }) {
  const form = h("form", { className: "card questionnaire", "data-instrument": definition.id, novalidate: true });
  form.append(h("p", {}, definition.description));
  for (const item of definition.items) form.append(itemField(definition, item, onRiskAnswer));
  const result = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit" }, submitLabel);
  form.append(h("div", { className: "actions" }, button), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answers = {};
    const missing = [];
    for (const item of definition.items) {
      const value = readAnswer(form, item);
      if (value === undefined) { if (item.required) missing.push(item); } else answers[item.id] = value;
    }
    result.replaceChildren();
    if (missing.length) {
      result.append(h("p", { className: "error", role: "alert" },
        `Please answer: ${missing.map((i) => translated(i.prompt, i.translations)).join("; ")}`));
      form.querySelector(`[name="${missing[0].id}"]`)?.focus();
      return;
    }
    button.disabled = true;
    try {
      await onSubmit(answers, result);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function itemField(definition, item, onRiskAnswer) {
  const prompt = translated(item.prompt, item.translations);
  const r = item.response;
  const optional = item.required ? "" : " (you can skip this)";
  if (r.type === "choice") {
    const legendId = nextId("q");
    return h("fieldset", { "aria-describedby": undefined },
      h("legend", { id: legendId }, prompt + optional),
      r.options.map((option) => h("label", {},
        h("input", { type: "radio", name: item.id, value: String(option.value),
          onchange: () => { if (isRiskAnswer(definition, item.id, option.value)) onRiskAnswer?.(); } }),
        translated(option.label, option.translations))));
  }
  const id = nextId("q");
  if (r.type === "integer" || r.type === "number") {
    const ends = h("p", { className: "muted", id: `${id}-ends` },
      `${r.min}${r.min_label ? ` = ${r.min_label}` : ""}, ${r.max}${r.max_label ? ` = ${r.max_label}` : ""}`);
    return h("div", {}, h("label", { for: id }, prompt + optional), ends,
      h("input", { type: "number", id, name: item.id, min: r.min, max: r.max, step: r.type === "integer" ? 1 : "any",
        inputmode: "numeric", "aria-describedby": `${id}-ends` }));
  }
  if (r.type === "yes_no") {
    return h("fieldset", {}, h("legend", {}, prompt + optional),
      h("label", {}, h("input", { type: "radio", name: item.id, value: "true" }), "Yes"),
      h("label", {}, h("input", { type: "radio", name: item.id, value: "false" }), "No"));
  }
  return h("div", {}, h("label", { for: id }, prompt + optional),
    h("textarea", { id, name: item.id, maxlength: r.max_length || 2000 }));
}

function readAnswer(form, item) {
  const r = item.response;
  if (r.type === "choice" || r.type === "yes_no") {
    const checked = form.querySelector(`input[name="${item.id}"]:checked`);
    if (!checked) return undefined;
    return r.type === "yes_no" ? checked.value === "true" : Number(checked.value);
  }
  const field = form.querySelector(`[name="${item.id}"]`);
  const text = field.value.trim();
  if (text === "") return undefined;
  return r.type === "free_text" ? text : Number(text);
}
