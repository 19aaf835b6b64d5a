// A tiny element builder: text is always set as text (never parsed as HTML), so what people
// wrote cannot run as markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "className") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
export function nextId(prefix) { uid += 1; return `${prefix}-${uid}`; }

export function say(text) {
  // Screen readers hear what changed on its own (an aria-live region).
  const live = document.getElementById("live");
  live.textContent = "";
  setTimeout(() => { live.textContent = text; }, 50);
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso.length === 10 ? `${iso}T12:00:00` : iso);
  return d.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

// A moment with its time of day, in the viewer's locale and time zone (the API speaks UTC).
export function whenTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { day: "numeric", month: "short", year: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function shortId(id) { return String(id).slice(0, 8); }

export function problemText(err) {
  if (err && err.problem) {
    const p = err.problem;
    return `${p.detail || p.title || "That did not work"}${p.field ? ` (${p.field})` : ""}`;
  }
  return err && err.message ? err.message : "That did not work. Please try again.";
}

export function errorBox(err) { return h("p", { className: "error", role: "alert" }, problemText(err)); }

// Run an action from a form or button: disable while it runs, show what went wrong next to it.
export async function act(button, where, work) {
  button.disabled = true;
  where.replaceChildren();
  try {
    await work();
  } catch (err) {
    where.append(errorBox(err));
  } finally {
    button.disabled = false;
  }
}
