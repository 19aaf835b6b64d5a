// The auditor's pages, read-only (an auditor changes nothing, and nothing here writes): the
// store's last full check, a client found from the access log or by id, and that client's
// decision history in words, replayed as of any moment (?as_of= on GET /clients/{id}/history),
// with the signed export to download and the access log of who read the record.
//
// What an auditor may read is the API's call (api/access.py): history and the export, the
// access log, the verification report. Plans, progress and FHIR are refused to auditors, so the
// goals "as they were" are replayed here from the history's own entries (history_words.js).
import * as api from "./api.js";
import { h, nextId, replace, when, whenTime } from "./dom.js";
import { plainProblem } from "./reviews.js";
import { STATUS_WORDS } from "./client.js";
import { actorWords, entryWords, goalTracker, goalsAsRecorded, roleWords, staffName, useInstruments } from "./history_words.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// A problem box that takes the focus, so keyboard and screen-reader users land on what went wrong.
function showProblem(where, text) {
  const box = h("p", { className: "error", role: "alert", tabindex: -1 }, text);
  replace(where, box);
  box.focus();
  return box;
}

// The access log from a moment on. The API answers oldest first, at most 5,000 a page, so the
// page moves `from` to the last entry it got until a page comes back short (at most `pages`).
const PAGE = 5000;
export async function accessLog(query, pages = 10) {
  const all = [];
  const seen = new Set();  // entries at the boundary moment come again on the next page
  let from = query.from || null;
  for (let i = 0; i < pages; i += 1) {
    const params = new URLSearchParams({ ...query, limit: PAGE });
    if (from) params.set("from", from);
    const { entries } = await api.get(`/audit/access?${params}`);
    for (const e of entries) {
      const key = JSON.stringify(e);
      if (!seen.has(key)) { seen.add(key); all.push(e); }
    }
    if (entries.length < PAGE) return { entries: all, complete: true };
    from = entries.at(-1).at;
  }
  return { entries: all, complete: false };
}

const RECENT_DAYS = 30;

// -- finding a client --------------------------------------------------------------------------

export async function auditHome(main) {
  replace(main, h("h1", {}, "Audit"),
    h("p", {}, "Read who proposed, revised, agreed and consented to what, and when, for any client of the clinic, "
      + "as the record stands now or as it stood at any moment. Nothing on these pages changes the record."));
  const check = h("section", { className: "card", id: "verification", "aria-labelledby": "verify-h" });
  const find = findForm();
  const recent = h("section", { id: "recent", "aria-labelledby": "recent-h" });
  main.append(check, find, recent);
  const [report, log] = await Promise.all([api.get("/audit/verify").catch((err) => ({ failed: err })),
    accessLog({ from: new Date(Date.now() - RECENT_DAYS * 86_400_000).toISOString() }).catch((err) => ({ failed: err }))]);
  replace(check, h("h2", { id: "verify-h" }, "Is the record whole?"), verificationWords(report));
  replace(recent, h("h2", { id: "recent-h" }, "Clients whose records staff have read"),
    h("p", { className: "muted" }, `Alliance gives auditors no list of clients; these are the clients in the access log of the last ${RECENT_DAYS} days`
      + `${log.complete === false ? " (its first 50,000 reads)" : ""}. For any other client, enter their id above.`),
    log.failed ? h("p", { className: "error", role: "alert" }, plainProblem(log.failed)) : readClients(log.entries));
}

function verificationWords(report) {
  if (report.failed) return h("p", { className: "error", role: "alert" }, plainProblem(report.failed));
  if (report.status === "never_checked") {
    return h("p", { "data-verification": "never_checked" }, h("span", { className: "badge warn" }, "Not checked yet"),
      " The store has not had a full check yet (the operator runs alliance verify).");
  }
  const check = report.store_check;
  const whole = check && check.ok;
  return [h("p", { "data-verification": whole ? "ok" : "problem" },
    h("span", { className: `badge ${whole ? "ok" : "danger"}` }, whole ? "Whole" : check ? "Problem found" : "Anchored"),
    check ? ` Last full check ${whenTime(check.checked_at)}: ${whole ? "every one of this clinic's records was checked and found unchanged."
      : check.complete ? "a record of this clinic did not match its chain." : "the check stopped before it reached all of this clinic's records."}`
      : " No full check is recorded with the latest anchor."),
  h("p", { className: "muted" }, `Anchored ${whenTime(report.anchored_at)}: ${report.streams} records, ${report.events} entries.`),
  check?.first_break ? h("p", { className: "error" }, `First break: ${check.first_break.stream_id}`
    + ` at entry ${check.first_break.version ?? "?"}: ${check.first_break.reason || check.first_break.problem || ""}`) : null];
}

function findForm() {
  const id = nextId("client-id");
  const field = h("input", { type: "text", id, name: "client_id", autocomplete: "off", spellcheck: "false",
    "aria-describedby": `${id}-hint` });
  const where = h("div");
  const button = h("button", { type: "submit" }, "Open the history");
  const form = h("form", { className: "card", id: "find-client", novalidate: true, "aria-labelledby": "find-h" },
    h("h2", { id: "find-h" }, "Find a client"), h("label", { for: id }, "Client id"),
    h("p", { className: "muted", id: `${id}-hint` }, "The id in the request you are auditing, like 9e1a4dad-9814-5b53-a581-f193c3cbeda2."),
    field, h("div", { className: "actions" }, button), where);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = field.value.trim().toLowerCase();
    field.removeAttribute("aria-invalid");
    if (!UUID.test(value)) {
      field.setAttribute("aria-invalid", "true");
      showProblem(where, "That is not a client id. A client id has 36 characters: letters a–f, digits and four dashes.");
      return;
    }
    button.disabled = true;
    try {
      await api.get(`/clients/${value}/history`);
      location.hash = `#/audit/clients/${value}`;
    } catch (err) {
      field.setAttribute("aria-invalid", "true");
      showProblem(where, err.status === 404 ? "There is no client with this id in your clinic." : plainProblem(err));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function readClients(entries) {
  const byClient = new Map();
  for (const e of entries) {
    const seen = byClient.get(e.client_id) || { reads: 0, last: e.at };
    seen.reads += 1;
    if (e.at > seen.last) seen.last = e.at;
    byClient.set(e.client_id, seen);
  }
  if (!byClient.size) return h("p", {}, "Nobody has read a client's record yet.");
  const rows = [...byClient.entries()].sort((a, b) => b[1].last.localeCompare(a[1].last));
  return h("div", { className: "table-scroll", tabindex: 0, role: "region", "aria-label": "Clients in the access log" },
    h("table", { id: "read-clients" }, h("caption", { className: "visually-hidden" }, "Clients in the access log, latest read first"),
      h("thead", {}, h("tr", {}, ["Client", "Last read", "Reads"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map(([clientId, seen]) => h("tr", { "data-client": clientId },
        h("td", {}, h("a", { href: `#/audit/clients/${clientId}` }, api.nameOf(clientId))),
        h("td", {}, whenTime(seen.last)), h("td", {}, String(seen.reads)))))));
}

// -- one client's history ----------------------------------------------------------------------

export async function auditClient(main, clientId) {
  const [now, instruments] = await Promise.all([api.get(`/clients/${clientId}/history`), api.instrumentList()]);
  useInstruments(instruments);
  const status = h("p", { id: "as-of-status", className: "hint", tabindex: -1 });
  const goals = h("section", { id: "goals-then", "aria-labelledby": "goals-h" });
  const entries = h("section", { id: "entries", "aria-labelledby": "entries-h" });
  const state = { asOf: null, view: now };
  const show = async (asOf, { focus = true } = {}) => {
    state.asOf = asOf;
    try {
      state.view = asOf ? await api.get(`/clients/${clientId}/history?as_of=${encodeURIComponent(asOf)}`) : now;
    } catch (err) {
      if (err.status !== 404) { showProblem(status, plainProblem(err)); return; }
      state.view = { entries: [], erased: false };  // nothing was recorded for this client by then
    }
    draw();
    if (focus) status.focus();  // the focused line is what a screen reader reads next
  };
  const draw = () => {
    const list = state.view.entries;
    status.replaceChildren(state.asOf
      ? `Showing the record as it stood on ${whenTime(state.asOf)} (your time): ${list.length} of ${now.entries.length} entries had been recorded.`
      : `Showing the record as it stands now: ${list.length} entries.`);
    if (state.asOf && !list.length) status.append(" Nothing had been recorded for this client by then.");
    drawGoals(goals, list, state.asOf);
    drawEntries(entries, list, clientId, (asOf) => show(asOf), state);
  };
  replace(main, h("h1", {}, `Decision history – ${api.nameOf(clientId)}`),
    h("p", {}, h("a", { href: "#/audit" }, "Choose another client")),
    now.erased ? h("p", { className: "hint" }, "This client's data has been erased: what they wrote reads as erased.") : null,
    asOfForm(show), status, goals, entries, exportSection(clientId), accessSection(clientId));
  draw();
}

function asOfForm(show) {
  const id = nextId("as-of");
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const field = h("input", { type: "datetime-local", id, name: "as_of", step: 1, "aria-describedby": `${id}-hint` });
  const where = h("div");
  const view = h("button", { type: "submit" }, "Show the record as it was then");
  const back = h("button", { type: "button", className: "quiet", id: "as-of-now" }, "Back to now");
  back.addEventListener("click", () => { field.value = ""; where.replaceChildren(); show(null); });
  const form = h("form", { className: "card", id: "as-of", novalidate: true, "aria-labelledby": `${id}-h` },
    h("h2", { id: `${id}-h` }, "As of a moment"),
    h("label", { for: id }, "Date and time"),
    h("p", { className: "muted", id: `${id}-hint` }, `In your time zone (${zone}). The record is shown as it had been recorded by then; `
      + "each entry below can also be opened as it stood right after it."),
    field, h("div", { className: "actions" }, view, back), where);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const moment = field.value ? new Date(field.value) : null;  // datetime-local is read in the viewer's zone
    if (!moment || Number.isNaN(moment.getTime())) {
      field.setAttribute("aria-invalid", "true");
      showProblem(where, "Please enter a date and a time.");
      return;
    }
    field.removeAttribute("aria-invalid");
    where.replaceChildren();
    show(moment.toISOString());
  });
  return form;
}

function drawGoals(box, entries, asOf) {
  const goals = goalsAsRecorded(entries);
  replace(box, h("h2", { id: "goals-h" }, asOf ? "The goals as they were then" : "The goals now"),
    !goals.length ? h("p", {}, "No goals had been recorded.") : h("ul", { className: "goals-then" }, goals.map((g) => {
      const client = g.agreed.client;
      const clinician = g.agreed.clinician;
      const agreed = client == null && clinician == null ? `No one had agreed to version ${g.version} yet.`
        : `Agreed to version ${g.version} by ${[client === g.version ? "the client" : null,
          clinician === g.version ? "the clinician" : null].filter(Boolean).join(" and ") || "no one yet"}.`;
      return h("li", { className: "card", "data-goal": g.goal_id, "data-status": g.status },
        h("p", { className: "words" }, `“${g.words}”`),
        h("p", {}, h("span", { className: `badge ${g.status === "active" ? "ok" : "warn"}` }, STATUS_WORDS[g.status] || g.status),
          ` Version ${g.version}. ${agreed}`),
        g.aim ? h("p", {}, `Aim, as changed by agreement: “${g.aim}”`) : null,
        g.due_date ? h("p", { className: "muted" }, `Due ${when(g.due_date)}.`) : null,
        g.openChanges.size ? h("p", { className: "muted" }, `${g.openChanges.size} proposed change${g.openChanges.size > 1 ? "s" : ""} not answered yet.`) : null);
    })));
}

// Which entries to show: decisions only leaves out what was measured, noted and flagged.
const KINDS = { all: "Everything", decisions: "Decisions: goals, agreements, changes, reviews, consents, care team",
  measures: "Questionnaires, notes, risk flags and alerts" };
const MEASURED = /^(measurement|note|risk|alert|feedback)\./;
const shown = (kind, entry) => kind === "all" || (kind === "measures") === MEASURED.test(entry.type);

function drawEntries(box, entries, clientId, showAfter, state) {
  const goals = goalTracker();
  let consents = "";
  const kind = state.kind || "all";
  const rows = entries.flatMap((entry) => {
    goals.see(entry);  // every entry, shown or not: later sentences name the goals by their words then
    if (!shown(kind, entry)) return [];
    const who = actorWords(entry, clientId);
    const words = entryWords(entry, goals);
    const whatId = `what-${entry.event_id}`;
    const inForce = entry.consents_in_force.map((c) => c.scope.replaceAll("_", " ")).join(", ") || "none";
    const consentLine = inForce !== consents ? h("p", { className: "muted" }, `Consents in force from here: ${inForce}.`) : null;
    consents = inForce;  // (counted over the shown entries: a line says what changed since the one above)
    const late = Math.abs(new Date(entry.recorded_at) - new Date(entry.occurred_at)) > 60_000;
    return h("tr", { "data-event": entry.event_id, "data-type": entry.type },
      h("td", {}, whenTime(entry.occurred_at), late ? h("p", { className: "muted" }, `recorded ${whenTime(entry.recorded_at)}`) : null),
      h("td", {}, h("span", { className: "who" }, who.name), h("br"), h("span", { className: "muted" }, who.role)),
      h("td", { id: whatId }, h("p", { className: "what" }, words.text), words.quote ? h("p", { className: "words" }, `“${words.quote}”`) : null,
        consentLine),
      h("td", {}, h("button", { type: "button", className: "quiet as-of-entry", "aria-describedby": whatId,
        onclick: () => showAfter(entry.recorded_at) }, "As it stood after this")));
  });
  const filter = h("select", { id: "entry-kind", name: "kind" },
    Object.entries(KINDS).map(([value, text]) => h("option", { value, selected: value === kind }, text)));
  filter.addEventListener("change", () => {
    state.kind = filter.value;
    drawEntries(box, entries, clientId, showAfter, state);
    document.getElementById("entry-kind").focus();  // redrawn: the focus stays on the choice
  });
  replace(box, h("h2", { id: "entries-h" }, "What happened, oldest first"),
    h("label", { for: "entry-kind" }, "Show"), filter,
    !rows.length ? h("p", {}, "No entries.") : h("div", { className: "table-scroll", tabindex: 0, role: "region", "aria-label": "Decision history" },
      h("table", { id: "history" }, h("caption", { className: "visually-hidden" }, "Every recorded decision, oldest first"),
        h("thead", {}, h("tr", {}, ["When", "Who", "What happened", "Replay"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows))));
}

// -- the signed export and the access log ------------------------------------------------------

function exportSection(clientId) {
  const where = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "button", id: "download-export" }, "Download the signed export");
  button.addEventListener("click", async () => {
    button.disabled = true;
    where.replaceChildren();
    try {
      const answer = await api.request("GET", `/clients/${clientId}/history/export`);
      const name = `alliance-history-${clientId.slice(0, 8)}-${new Date().toISOString().slice(0, 10)}.json`;
      // The body exactly as the server signed it; saved through a link to an in-memory file.
      const url = URL.createObjectURL(new Blob([answer.text], { type: answer.type || "application/json" }));
      const link = h("a", { href: url, download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      const check = answer.data.verification;
      const note = h("p", { className: "notice", tabindex: -1 }, `Saved ${name}: ${answer.data.events.length} entries, signed by the server. `,
        check.ok ? `The server's own check found all ${check.events_checked} entries unchanged.`
          : `The server's own check found problems: ${check.problems.map((p) => p.detail || p.code || p).join("; ")}.`,
        " Anyone can check it again offline with: alliance verify --export ", h("code", {}, name));
      replace(where, note);
      note.focus();
    } catch (err) {
      showProblem(where, plainProblem(err));
    } finally {
      button.disabled = false;
    }
  });
  return h("section", { className: "card", id: "export", "aria-labelledby": "export-h" },
    h("h2", { id: "export-h" }, "Signed export"),
    h("p", {}, "Every entry as stored, each record's chain head, the server's check and its signature, as one JSON file."),
    h("div", { className: "actions" }, button), where);
}

const ROUTE_WORDS = { history: "decision history", export: "signed export", plan: "plan", progress: "progress",
  fhir: "FHIR record", stream: "live progress", goals: "a goal" };
function routeWords(route) {
  const last = route.split("/").filter((p) => p && !p.startsWith("{")).at(-1) || route;
  return ROUTE_WORDS[last] || last.replaceAll("-", " ");
}

function accessSection(clientId) {
  const box = h("section", { id: "access", "aria-labelledby": "access-h" }, h("h2", { id: "access-h" }, "Who read this record"),
    h("p", {}, "Loading…"));
  accessLog({ client: clientId }).then((log) => {
    const latest = [...log.entries].reverse().slice(0, 50);
    replace(box, h("h2", { id: "access-h" }, "Who read this record"),
      h("p", { className: "muted" }, `From the access log: every read by staff${log.entries.length > 50 ? ", the latest 50" : ""}`
        + `${log.complete ? "" : " of its first 50,000"}, newest first.`),
      !latest.length ? h("p", {}, "No reads yet.") : h("div", { className: "table-scroll", tabindex: 0, role: "region", "aria-label": "Access log" },
        h("table", { id: "access-log" }, h("caption", { className: "visually-hidden" }, "Reads of this client's record, newest first"),
          h("thead", {}, h("tr", {}, ["When", "Who", "Read", "Answer"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, latest.map((e) => h("tr", {}, h("td", {}, whenTime(e.at)),
            h("td", {}, `${staffName(e.actor_id)} (${roleWords(e.actor_role)})`), h("td", {}, routeWords(e.route)),
            h("td", {}, e.status < 300 ? "allowed" : `refused (${e.status})`)))))));
  }).catch((err) => replace(box, h("h2", { id: "access-h" }, "Who read this record"),
    h("p", { className: "error", role: "alert" }, plainProblem(err))));
  return box;
}
