// The client's pages: my goals in my own words beside the agreed version, hints as guidance,
// agreeing, consenting to or declining a proposed change (shown side by side), check-ins
// (mood diary, questionnaires) and my progress, live.
import * as api from "./api.js";
import { act, h, replace, say, when } from "./dom.js";
import { follow } from "./live.js";
import { measureChart, reviewMarks, timelineMarks } from "./charts.js";
import { instrumentForm } from "./forms.js";
import { setCrisis, showCrisis } from "./crisis.js";
import { allReviews, awaitingClient, outcomeWords } from "./reviews.js";

const me = () => api.principal().id;

export const STATUS_WORDS = { proposed: "Not agreed yet", active: "Agreed – working on it", paused: "Paused",
  achieved: "Achieved", not_achieved: "Closed", discontinued: "Stopped", maintenance: "Keeping it up",
  declined: "Declined", withdrawn: "Withdrawn", entered_in_error: "Removed (made by mistake)" };
const FACET_WORDS = { specific: "What exactly", measure: "How I will know", achievable: "Why I can do it",
  relevant: "Why it matters to me", time_bound: "By when", target: "Aim" };

export async function plan(main) {
  // The plan has the goals; reviews and the client's answers to them are in the progress view.
  const [view, progressView] = await Promise.all([api.get(`/clients/${me()}/plan`), api.get(`/clients/${me()}/progress`)]);
  setCrisis(view.crisis_information);
  replace(main, h("h1", {}, "My goals"), liveStatus());
  const due = h("div", { id: "due" });
  const list = h("div", { id: "goals" });
  main.append(due, list);
  const state = { plan: view, progress: progressView };
  drawDue(due, state);
  drawGoals(list, state);
  follow(`/clients/${me()}/progress/stream-tickets`, {
    plan: (fresh) => {
      if (fresh.crisis_information) setCrisis(fresh.crisis_information);
      state.plan = fresh;
      drawDue(due, state);
      drawGoals(list, state);
      say("Your goals were updated.");
    },
    progress: (fresh) => {
      state.progress = fresh;
      drawDue(due, state);
      for (const box of list.querySelectorAll("[data-reviews-for]")) replace(box, lastReview(box.dataset.reviewsFor, fresh));
    },
  }, { onStatus: showStatus });
}

// What the plan asks for today: questionnaires (a schedule's administration that is due or
// overdue) and reviews waiting for the client's answer.
async function drawDue(box, { plan: view, progress: progressView }) {
  const attached = [...(view.measures || []), ...(view.goals || []).flatMap((g) => g.measures || [])];
  const due = attached.filter((m) => m.administration && ["due", "overdue"].includes(m.administration.state));
  const reviews = allReviews(progressView).filter(awaitingClient);
  if (!due.length && !reviews.length) { box.replaceChildren(); return; }
  const all = await api.instrumentList();
  replace(box, h("section", { className: "card notice", "aria-labelledby": "due-h" }, h("h2", { id: "due-h" }, "To do today"),
    h("ul", {}, due.map((m) => h("li", {}, h("a", { href: `#/me/check-in/${m.instrument_id}` },
      api.latest(all, m.instrument_id)?.title || m.instrument_id))),
    reviews.length ? h("li", {}, h("a", { href: "#/me/reviews" }, reviews.length === 1
      ? "A review to look at: do you agree with it?" : `${reviews.length} reviews to look at: do you agree with them?`)) : null)));
}

function drawGoals(list, state) {
  const goals = state.plan.goals.filter((g) => !["withdrawn", "entered_in_error"].includes(g.status));
  if (!goals.length) { replace(list, h("p", {}, "No goals yet. Your clinician and you can set one together.")); return; }
  replace(list, goals.map((goal) => goalCard(goal, state.progress)));
}

// The goal's latest review and the client's answer to it (or a link to give one).
function lastReview(goalId, progressView) {
  const review = allReviews(progressView).find((r) => r.goal_id === goalId);
  if (!review) return null;
  const said = awaitingClient(review)
    ? [" ", h("a", { href: "#/me/reviews" }, "Do you agree with it?")]
    : review.client_agrees ? " You agreed with it." : [" You see it differently: ", h("q", {}, review.client_confirmation)];
  return h("p", { className: "hint" }, `Last review (${when(review.occurred_at)}): ${outcomeWords(review.outcome)}.`, said);
}

function goalCard(goal, progressView) {
  const where = h("div", { "aria-live": "polite" });
  const mine = goal.client_words || goal.statement;
  const agreedVersion = goal.agreement.activated_version;
  const card = h("article", { className: "card goal", "data-goal": goal.goal_id, "aria-labelledby": `g-${goal.goal_id}` },
    h("h2", { id: `g-${goal.goal_id}` }, mine),
    h("p", {}, h("span", { className: `badge ${goal.status === "active" ? "ok" : "warn"}` }, STATUS_WORDS[goal.status] || goal.status),
      goal.due_date ? ` · aiming for ${when(goal.due_date)}` : ""),
    h("div", { className: "side-by-side" },
      h("div", {}, h("h3", {}, "In my own words"), h("p", { className: "words" }, goal.client_words || "–")),
      h("div", {}, h("h3", {}, agreedVersion ? "What we agreed" : "The wording on the table"),
        h("p", { className: "words" }, goal.statement || goal.client_words || "–"),
        goal.last_reflection ? h("p", { className: "muted" }, `My clinician's reflection: “${goal.last_reflection}”`) : null)),
    h("div", { className: "goal-review", "data-reviews-for": goal.goal_id }, lastReview(goal.goal_id, progressView)),
    facets(goal), guidance(goal), agreement(goal, where), changes(goal, where), where);
  return card;
}

function facets(goal) {
  const entries = Object.entries(goal.facets || {});
  if (!entries.length) return null;
  return h("dl", {}, entries.map(([k, v]) => [h("dt", {}, FACET_WORDS[k] || k), h("dd", {}, v)]));
}

function guidance(goal) {
  const tips = [...(goal.smart?.suggestions || []),
    ...(goal.plain_language || []).map((hint) => `Instead of “${hint.found}”, you could say “${hint.suggestion}”.`)];
  if (!tips.length) return null;
  return h("details", { className: "hint" }, h("summary", {}, "Ideas to make this goal clearer (only if you want)"),
    h("ul", {}, tips.map((t) => h("li", {}, t))));
}

function agreement(goal, where) {
  if (!["proposed", "active"].includes(goal.status)) return null;
  if (goal.agreement.client === "agree") {
    return h("p", { className: "notice agreed" }, goal.agreement.clinician === "agree"
      ? `You and your clinician both agreed to this version (${goal.version}).`
      : `You agreed to this version (${goal.version}). Waiting for your clinician.`);
  }
  const button = h("button", { type: "button", className: "agree" }, "I agree to this goal");
  button.addEventListener("click", () => act(button, where, async () => {
    await api.post(`/goals/${goal.goal_id}/agreements`, { version: goal.version });
    where.append(h("p", { className: "notice" }, "Thank you – you agreed to this goal."));
    say("You agreed to this goal.");
  }));
  return h("div", { className: "actions" }, button);
}

function changes(goal, where) {
  const mineToDecide = (goal.open_changes || []).filter((c) => c.awaiting === "client");
  if (!mineToDecide.length) return null;
  return mineToDecide.map((change) => {
    const accept = h("button", { type: "button", className: "accept-change" }, "Yes, make this change");
    const declineReason = h("textarea", { id: `why-${change.change_id}`, name: "reason" });
    const decline = h("button", { type: "button", className: "quiet decline-change" }, "No, keep it as it is");
    accept.addEventListener("click", () => act(accept, where, async () => {
      await api.post(`/goals/${goal.goal_id}/changes/${change.change_id}/acceptance`, {});
      say("You said yes to the change.");
    }));
    decline.addEventListener("click", () => act(decline, where, async () => {
      await api.post(`/goals/${goal.goal_id}/changes/${change.change_id}/decline`,
        { reason: declineReason.value.trim() || null });
      say("You kept the goal as it is.");
    }));
    return h("section", { className: "card change", "data-change": change.change_id, "aria-label": "A suggested change" },
      h("h3", {}, "Your clinician suggests a change"),
      h("div", { className: "side-by-side" },
        h("div", {}, h("h4", {}, "Now"), h("p", { className: "words" }, current(goal, change))),
        h("div", {}, h("h4", {}, "Suggested"), h("p", { className: "words" }, proposed(change)))),
      change.rationale ? h("p", {}, `Why: ${change.rationale}`) : null,
      h("label", { for: `why-${change.change_id}` }, "If you say no, you can say why (optional)"), declineReason,
      h("div", { className: "actions" }, accept, decline));
  });
}

function current(goal, change) {
  if (change.kind === "due_date") return goal.due_date ? when(goal.due_date) : "No date";
  if (change.kind === "pace") return goal.pace || "No pace set";
  if (change.kind === "target") return goal.facets?.target || "No aim set yet";
  return goal.statement || goal.client_words;
}
function proposed(change) {
  if (change.new_date) return when(change.new_date);
  return change.new_text || (change.new_levels?.length ? change.new_levels.join(" / ") : change.kind.replaceAll("_", " "));
}

// -- progress ----------------------------------------------------------------------------------

function liveStatus() { return h("p", { className: "status-live", id: "live-status" }, "Connecting for live updates…"); }
function showStatus(state, info) {
  const el = document.getElementById("live-status");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = { live: "Live: this page updates by itself.", reconnecting: "Reconnecting…",
    offline: "Live updates are not available right now.", ended: `Live updates stopped${info?.reason ? ` (${info.reason.replaceAll("_", " ")})` : ""}.` }[state];
}

export async function progress(main) {
  const [view, planView] = await Promise.all([api.get(`/clients/${me()}/progress`), api.get(`/clients/${me()}/plan`)]);
  setCrisis(planView.crisis_information);
  await api.instrumentList();
  replace(main, h("h1", {}, "My progress"), liveStatus());
  const charts = h("div", { id: "charts" });
  main.append(charts);
  let latestPlan = planView;
  let latest = view;
  const redraw = async () => replace(charts, await chartCards(latest, latestPlan, { forClient: true }));
  await redraw();
  follow(`/clients/${me()}/progress/stream-tickets`, {
    progress: async (fresh) => { latest = fresh; await redraw(); say("Your progress was updated."); },
    plan: async (fresh) => { latestPlan = fresh; await redraw(); },
  }, { onStatus: showStatus });
}

export async function chartCards(view, planView, { forClient }) {
  const measures = view.measures.filter((m) => m.points.length);
  if (!measures.length) return [h("p", {}, forClient ? "Nothing recorded yet. Try a check-in." : "No measurements yet.")];
  const marks = [...timelineMarks(planView?.goals), ...reviewMarks(view.goals)];
  const cards = [];
  for (const m of measures) {
    const definition = await api.instrument(m.instrument_id, m.points.at(-1).instrument_version);
    cards.push(measureChart(m, definition, marks, { forClient }));
  }
  return cards;
}

// -- check-ins ---------------------------------------------------------------------------------

const CHECK_INS = ["mood_diary", "phq9", "gad7"];

export async function checkIn(main) {
  const [all, view] = await Promise.all([api.instrumentList(), api.get(`/clients/${me()}/plan`)]);
  // The everyday check-ins, and whatever the plan attached (on a goal or the episode).
  const attached = [...(view.measures || []), ...view.goals.flatMap((g) => g.measures || [])].map((m) => m.instrument_id);
  const offered = [...new Set([...CHECK_INS, ...attached])].map((id) => api.latest(all, id)).filter(Boolean);
  replace(main, h("h1", {}, "Check in"),
    h("p", {}, "Tell us how things have been. Your clinician sees your answers."),
    h("ul", { className: "people" }, offered.map((d) => h("li", {},
      h("a", { className: "button", href: `#/me/check-in/${d.id}` }, d.title)))));
}

export async function questionnaire(main, id) {
  const definition = await api.instrument(id);
  if (!definition) throw new Error("There is no such questionnaire.");
  replace(main, h("h1", {}, definition.title));
  main.append(instrumentForm(definition, {
    onRiskAnswer: showCrisis,
    onSubmit: async (answers, result) => {
      try {
        const answer = await api.post(`/clients/${me()}/measurements`,
          { instrument_id: definition.id, instrument_version: definition.version, answers, observed_at: new Date().toISOString() });
        if (answer.risk?.crisis_information) { setCrisis(answer.risk.crisis_information); showCrisis(); }
        result.append(h("p", { className: "notice", role: "status" }, "Saved. Thank you."),
          h("p", {}, h("a", { href: "#/me/progress" }, "See my progress")));
        say("Your answers were saved.");
      } catch (err) {
        result.append(h("p", { className: "error", role: "alert" }, err.problem?.detail || err.message));
      }
    },
  }));
}
