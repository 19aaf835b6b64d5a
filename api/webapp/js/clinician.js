// The clinician's pages: the caseload (open risk flags and what awaits them), a client's plan
// and progress with the collaborative actions, acknowledging a risk flag, recording a review,
// and the history of who did what.
import * as api from "./api.js";
import { act, h, replace, say, when } from "./dom.js";
import { follow } from "./live.js";
import { chartCards } from "./client.js";
import { clinicianReviews } from "./reviews.js";
import { actorWords, entryWords, goalTracker, useInstruments } from "./history_words.js";

// -- caseload ----------------------------------------------------------------------------------

// What waits for this clinician in a plan: goals not yet agreed by them, changes proposed by the
// client, open risk flags, and (when the plan carries them) measures due and alerts.
export function awaiting(plan) {
  const items = [];
  for (const goal of plan.goals || []) {
    if (goal.status === "proposed" && goal.agreement?.clinician !== "agree") items.push("a goal to agree");
    for (const c of goal.open_changes || []) if (c.awaiting === "clinician") items.push("a change to answer");
  }
  for (const m of dueMeasures(plan)) items.push(`${m.instrument_id} ${m.administration.state}`);
  for (const alert of plan.open_alerts || []) items.push(`not on track (${alert.instrument_id})`);
  return items;
}

// Attached measures (on goals and on the episode) whose administration today is due or overdue.
export function dueMeasures(plan) {
  const attached = [...(plan.measures || []), ...(plan.goals || []).flatMap((g) => g.measures || [])];
  return attached.filter((m) => m.administration && ["due", "overdue"].includes(m.administration.state));
}

export async function caseload(main) {
  replace(main, h("h1", {}, "Caseload"), h("p", { className: "status-live", id: "live-status" }, "Connecting…"));
  const table = h("div", { className: "table-scroll", id: "caseload", tabindex: 0, role: "region", "aria-label": "My clients" });
  main.append(table);
  const draw = async () => {
    const page = await api.get("/clients?discharged=false");
    const rows = await Promise.all(page.items.map(async (row) => {
      let waits = [];
      try { waits = awaiting(await api.get(`/clients/${row.client_id}/plan`)); } catch { waits = ["(plan not readable)"]; }
      return { row, waits };
    }));
    replace(table, h("table", {},
      h("caption", { className: "visually-hidden" }, "My clients"),
      h("thead", {}, h("tr", {}, ["Client", "Open risk flags", "Waiting for me", "Goals", "Last activity"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map(({ row, waits }) => h("tr", { "data-client": row.client_id },
        h("td", {}, h("a", { href: `#/clients/${row.client_id}` }, api.nameOf(row.client_id))),
        h("td", { className: "risk" }, row.open_risk_flags
          ? h("span", { className: "badge danger" }, `${row.open_risk_flags} open`) : "none"),
        h("td", {}, waits.length ? waits.join(", ") : "nothing"),
        h("td", {}, String(row.goals)), h("td", {}, when(row.last_activity)))))));
  };
  await draw();
  follow("/caseload/stream-tickets", { changed: draw, added: draw, removed: draw }, { onStatus: (state) => {
    const el = document.getElementById("live-status");
    if (el) { el.dataset.state = state; el.textContent = state === "live" ? "Live: updates by itself." : "Reconnecting…"; }
  } });
}

// -- one client --------------------------------------------------------------------------------

export async function clientPage(main, clientId) {
  const [plan, progress] = await Promise.all([api.get(`/clients/${clientId}/plan`), api.get(`/clients/${clientId}/progress`)]);
  await api.instrumentList();
  replace(main, h("h1", {}, api.nameOf(clientId)),
    h("p", {}, h("a", { href: `#/clients/${clientId}/history` }, "History: who did what")),
    h("p", { className: "status-live", id: "live-status" }, "Connecting…"));
  const risks = h("section", { id: "risks", "aria-labelledby": "risks-h" });
  const goals = h("section", { id: "plan", "aria-labelledby": "plan-h" });
  const charts = h("section", { id: "charts", "aria-labelledby": "charts-h" });
  const propose = proposeGoalForm(clientId);
  main.append(risks, goals, propose, charts);
  let latestPlan = plan;
  let latestProgress = progress;
  const drawPlan = () => {
    replace(risks, h("h2", { id: "risks-h" }, "Open risk flags"), riskFlags(clientId, latestPlan),
      (latestPlan.open_alerts || []).length
        ? [h("h2", { id: "alerts-h" }, "Not on track"), latestPlan.open_alerts.map((a) => alertForm(clientId, a))] : null,
      dueMeasures(latestPlan).length ? h("p", { className: "hint" }, `Due: ${dueMeasures(latestPlan)
        .map((m) => `${m.instrument_id} (${m.administration.state})`).join(", ")}`) : null);
    replace(goals, h("h2", { id: "plan-h" }, "Plan"), latestPlan.goals.length ? latestPlan.goals.map(goalCard) : h("p", {}, "No goals yet."));
    drawReviews();
  };
  // Reviews and the client's answers come with the progress view: only their boxes are redrawn
  // when it changes (what is typed in the plan's forms stays).
  const drawReviews = () => {
    for (const box of goals.querySelectorAll("[data-reviews-for]")) {
      const progressGoal = latestProgress.goals.find((pg) => pg.goal_id === box.dataset.reviewsFor);
      replace(box, clinicianReviews([...(progressGoal?.reviews || [])]
        .sort((a, b) => b.occurred_at.localeCompare(a.occurred_at))));
    }
  };
  const drawProgress = async () => replace(charts, h("h2", { id: "charts-h" }, "Progress"),
    await chartCards(latestProgress, latestPlan, { forClient: false }));
  drawPlan();
  await drawProgress();
  follow(`/clients/${clientId}/progress/stream-tickets`, {
    plan: async (fresh) => { latestPlan = fresh; drawPlan(); await drawProgress(); say("The plan was updated."); },
    progress: async (fresh) => { latestProgress = fresh; drawReviews(); await drawProgress(); say("Progress was updated."); },
  }, { onStatus: (state) => {
    const el = document.getElementById("live-status");
    if (el) { el.dataset.state = state; el.textContent = state === "live" ? "Live: updates by itself." : "Reconnecting…"; }
  } });
}

function riskFlags(clientId, plan) {
  const open = plan.open_risk_flags || [];
  if (!open.length) return h("p", {}, "None open.");
  return open.map((flag) => {
    const where = h("div", { "aria-live": "polite" });
    const id = `action-${flag.flag_id}`;
    const field = h("textarea", { id, name: "action_taken", required: true });
    const button = h("button", { type: "submit" }, "Acknowledge");
    const form = h("form", { className: "card risk-flag", "data-flag": flag.flag_id },
      h("p", {}, h("span", { className: "badge danger" }, "Risk"),
        ` Raised ${when(flag.raised_at)} from ${flag.source}${flag.items?.length ? ` (${flag.items.join(", ")})` : ""}.`),
      h("label", { for: id }, "Action taken"), field, h("div", { className: "actions" }, button), where);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      act(button, where, async () => {
        await api.post(`/clients/${clientId}/risk-flags/${flag.flag_id}/acknowledgement`, { action_taken: field.value.trim() });
        where.append(h("p", { className: "notice" }, "Acknowledged."));
        say("Risk flag acknowledged.");
      });
    });
    return form;
  });
}

// A not-on-track alert with its data and criterion; the clinician acknowledges it with what they did.
function alertForm(clientId, alert) {
  const where = h("div", { "aria-live": "polite" });
  const id = `alert-action-${alert.alert_id}`;
  const field = h("textarea", { id, name: "action_taken", required: true });
  const button = h("button", { type: "submit" }, "Acknowledge");
  const form = h("form", { className: "card alert", "data-alert": alert.alert_id },
    h("p", {}, h("span", { className: "badge warn" }, alert.rule.replaceAll("_", " ")),
      ` ${alert.instrument_id}: ${alert.baseline} → ${alert.latest} over ${alert.administrations} administrations `
      + `(${alert.weeks.toFixed(1)} weeks). ${alert.criterion} (${alert.source})`),
    h("label", { for: id }, "Action taken"), field, h("div", { className: "actions" }, button), where);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(button, where, async () => {
      await api.post(`/clients/${clientId}/alerts/${alert.alert_id}/acknowledgement`, { action_taken: field.value.trim() });
      say("Alert acknowledged.");
    });
  });
  return form;
}

function textForm({ label, name, button, className, multiline = false, required = true, extra = [], send }) {
  const where = h("div", { "aria-live": "polite" });
  const id = `${className}-${Math.random().toString(36).slice(2, 8)}`;
  const field = multiline ? h("textarea", { id, name, required }) : h("input", { type: "text", id, name, required });
  const submit = h("button", { type: "submit" }, button);
  const form = h("form", { className }, h("label", { for: id }, label), field, ...extra,
    h("div", { className: "actions" }, submit), where);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(submit, where, async () => { await send(field.value.trim(), form); field.value = ""; say("Saved."); });
  });
  return form;
}

function proposeGoalForm(clientId) {
  return h("section", { className: "card", "aria-labelledby": "propose-h" }, h("h2", { id: "propose-h" }, "Propose a goal"),
    textForm({ label: "The goal, in words the client would use", name: "text", button: "Propose", className: "propose-goal",
      send: (text) => api.post(`/clients/${clientId}/goals`, { text }) }));
}

const REVIEW_OUTCOMES = ["celebrate", "continue", "adjust_pace", "adjust_target", "reframe", "pause"];

function goalCard(goal) {
  const g = goal.goal_id;
  const card = h("article", { className: "card goal", "data-goal": g, "aria-labelledby": `cg-${g}` },
    h("h3", { id: `cg-${g}` }, goal.client_words || goal.statement),
    h("p", {}, h("span", { className: "badge" }, goal.status), ` version ${goal.version}`,
      goal.due_date ? ` · due ${when(goal.due_date)}` : ""),
    h("div", { className: "side-by-side" },
      h("div", {}, h("h4", {}, "Client's words"), h("p", { className: "words" }, goal.client_words || "–")),
      h("div", {}, h("h4", {}, "Statement"), h("p", { className: "words" }, goal.statement || "–"),
        goal.last_reflection ? h("p", { className: "muted" }, `Last reflection: ${goal.last_reflection}`) : null)),
    h("p", {}, `Agreement: client ${goal.agreement.client}, clinician ${goal.agreement.clinician}`),
    goal.smart?.missing?.length ? h("p", { className: "hint" }, `SMART: missing ${goal.smart.missing.join(", ")}`) : null,
    (goal.open_changes || []).map((c) => h("p", { className: "hint" },
      `Change proposed (${c.kind.replaceAll("_", " ")}): ${c.new_text || c.new_date || ""} – awaiting ${c.awaiting}`)),
    h("div", { className: "goal-reviews", "data-reviews-for": g }));
  const details = h("details", {}, h("summary", {}, "Work on this goal"));
  if (["proposed", "active"].includes(goal.status) && goal.agreement.clinician !== "agree") {
    const where = h("div", { "aria-live": "polite" });
    const agree = h("button", { type: "button", className: "agree" }, `Agree to version ${goal.version}`);
    agree.addEventListener("click", () => act(agree, where, () => api.post(`/goals/${g}/agreements`, { version: goal.version })));
    details.append(h("div", { className: "actions" }, agree), where);
  }
  if (goal.status === "proposed") {  // once agreed, the wording changes only through a change proposal
    details.append(
      textForm({ label: "Reflect the goal back", name: "reflection", button: "Reflect", className: "reflect",
        send: (reflection) => api.post(`/goals/${g}/reflections`, { reflection }) }),
      textForm({ label: "Revise the wording (a new version)", name: "text", button: "Revise", className: "revise",
        send: (text) => api.post(`/goals/${g}/revisions`, { text }) }));
  }
  if (goal.status === "active") {
    details.append(textForm({ label: "Propose a new aim (the client decides)", name: "new_text",
      button: "Propose change", className: "propose-change",
      extra: [h("label", { for: `why-${g}` }, "Why (shown to the client)"), h("input", { type: "text", id: `why-${g}`, name: "rationale" })],
      send: (newText, form) => api.post(`/goals/${g}/changes`,
        { kind: "target", new_text: newText, rationale: form.querySelector("[name=rationale]").value.trim() || null }) }));
    const outcome = h("select", { id: `outcome-${g}`, name: "outcome" }, REVIEW_OUTCOMES.map((o) => h("option", { value: o }, o.replaceAll("_", " "))));
    const summary = h("textarea", { id: `summary-${g}`, name: "summary", maxlength: 10000 });
    details.append(textForm({ label: "The client's view", name: "client_view", button: "Record review", className: "review",
      multiline: true, required: false,
      extra: [h("label", { for: `outcome-${g}` }, "Outcome of the review"), outcome,
        h("label", { for: `summary-${g}` }, "Summary, in plain words (the client reads it and says whether they agree)"), summary],
      send: async (clientView) => {
        await api.post(`/goals/${g}/reviews`,
          { outcome: outcome.value, client_view: clientView || null, summary: summary.value.trim() || null });
        summary.value = "";
      } }));
  }
  card.append(details);
  return card;
}

// -- history -----------------------------------------------------------------------------------

export async function history(main, clientId) {
  const [view, instruments] = await Promise.all([api.get(`/clients/${clientId}/history`), api.instrumentList()]);
  useInstruments(instruments);
  // Worded oldest first (a sentence names a goal by its words as the entries before it left them),
  // shown newest first.
  const goals = goalTracker();
  const rows = view.entries.map((e) => {
    goals.see(e);
    const who = actorWords(e, clientId);
    const words = entryWords(e, goals);
    return h("tr", { "data-event": e.event_id, "data-type": e.type },
      h("td", {}, when(e.occurred_at)),
      h("td", {}, h("p", { className: "what" }, words.text), words.quote ? h("p", { className: "words" }, `“${words.quote}”`) : null),
      h("td", {}, h("span", { className: "who" }, who.name), h("br"), h("span", { className: "muted" }, who.role)),
      h("td", {}, e.goal_version ?? ""));
  }).reverse();
  replace(main, h("h1", {}, `History – ${api.nameOf(clientId)}`),
    h("p", {}, h("a", { href: `#/clients/${clientId}` }, "Back to plan and progress")),
    h("div", { className: "table-scroll", tabindex: 0, role: "region", "aria-label": "History" }, h("table", { id: "history" },
      h("caption", { className: "visually-hidden" }, "Every recorded decision, newest first"),
      h("thead", {}, h("tr", {}, ["When", "What", "Who", "Goal version"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows))));
}
