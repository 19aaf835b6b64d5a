// Reviews, the client's as much as the clinician's. The client reads each review in plain words
// and says "I agree" or "I see it differently" (then in their own words, which the API needs:
// POST /goals/{goal}/reviews/{review}/confirmation). The clinician's page shows, beside what was
// recorded, whether the client confirmed, agreed, or gave their own view.
//
// Reviews and their confirmations come from the progress view (GET /clients/{id}/progress,
// goals[].reviews[]); the plan view carries the goals' words, which the review names.
import * as api from "./api.js";
import { h, nextId, replace, say, when } from "./dom.js";
import { follow } from "./live.js";
import { setCrisis } from "./crisis.js";

//: The API's limit on the client's view (ConfirmReview.client_view: a statement, api/input_limits.py).
export const VIEW_MAX = 2000;

export const OUTCOME_WORDS = {
  celebrate: "Celebrate: it is going well", continue: "Keep going as we are", adjust_pace: "Change the pace",
  adjust_target: "Change the aim", reframe: "Look at the goal in a new way", pause: "Pause the goal for now",
};
export const outcomeWords = (outcome) => OUTCOME_WORDS[outcome] || outcome.replaceAll("_", " ");

// Every review in the progress view, newest first, with the goal it belongs to.
export function allReviews(progressView) {
  return (progressView?.goals || []).flatMap((g) => g.reviews || [])
    .sort((a, b) => b.occurred_at.localeCompare(a.occurred_at));
}
export const awaitingClient = (review) => review.client_agrees === null || review.client_agrees === undefined;

function goalWords(planView, goalId) {
  const goal = (planView?.goals || []).find((g) => g.goal_id === goalId);
  return goal ? goal.client_words || goal.statement : "a goal";
}

function checkpointPurpose(planView, review) {
  if (!review.checkpoint_id) return null;
  for (const goal of planView?.goals || []) {
    const cp = (goal.checkpoints || []).find((c) => c.checkpoint_id === review.checkpoint_id);
    if (cp) return cp.purpose;
  }
  return null;
}

// -- the client's page -------------------------------------------------------------------------

// Answers sent from this page whose confirmation the progress view does not show yet (it is
// projected a moment after the write): shown as sent, so the form does not come back meanwhile.
const sent = new Map();

export async function clientReviews(main) {
  const me = api.principal().id;
  const [progressView, planView] = await Promise.all([api.get(`/clients/${me}/progress`), api.get(`/clients/${me}/plan`)]);
  setCrisis(planView.crisis_information);
  const status = h("p", { className: "status-live", id: "live-status" }, "Connecting for live updates…");
  const summary = h("p", { id: "reviews-summary" });
  const list = h("div", { id: "reviews" });
  replace(main, h("h1", {}, "Reviews of my goals"),
    h("p", {}, "At a review you and your clinician look at how a goal is going and decide what next. "
      + "Here you can say whether the record matches how you see it. Your clinician sees your answer."),
    status, summary, list);
  const state = { progress: progressView, plan: planView };
  const cards = new Map();  // review id → { node, key }: a card is rebuilt only when its state changes
  const draw = () => drawClientReviews(list, summary, cards, state);
  draw();
  follow(`/clients/${me}/progress/stream-tickets`, {
    progress: (fresh) => { state.progress = fresh; draw(); },
    plan: (fresh) => { state.plan = fresh; if (fresh.crisis_information) setCrisis(fresh.crisis_information); draw(); },
  }, { onStatus: (s) => {
    status.dataset.state = s;
    status.textContent = { live: "Live: this page updates by itself.", reconnecting: "Reconnecting…",
      offline: "Live updates are not available right now.", ended: "Live updates stopped." }[s];
  } });
}

function cardKey(review) {
  if (!awaitingClient(review)) return `confirmed:${review.client_agrees}`;
  return sent.has(review.review_id) ? "sent" : "awaiting";
}

function drawClientReviews(list, summary, cards, state, focusOn = null) {
  const reviews = allReviews(state.progress);
  for (const r of reviews) if (!awaitingClient(r)) sent.delete(r.review_id);
  const waiting = reviews.filter((r) => cardKey(r) === "awaiting").length;
  summary.textContent = !reviews.length ? "No reviews yet. When you and your clinician review a goal, it shows here."
    : waiting === 1 ? "1 review is waiting for your answer."
      : waiting ? `${waiting} reviews are waiting for your answer.` : "Nothing is waiting for your answer.";
  const focused = document.activeElement;
  const redraw = (id) => drawClientReviews(list, summary, cards, state, id);
  const nodes = reviews.map((review) => {
    const key = cardKey(review);
    const held = cards.get(review.review_id);
    if (held && held.key === key) return held.node;  // keeps what is being typed, and the focus
    const node = clientReviewCard(review, state.plan, redraw);
    cards.set(review.review_id, { node, key, hadFocus: Boolean(held && held.node.contains(focused)) });
    return node;
  });
  for (const id of [...cards.keys()]) if (!reviews.some((r) => r.review_id === id)) cards.delete(id);
  // In place: a card that stays is never moved (moving a node takes the focus out of it).
  const keep = new Set(nodes);
  for (const child of [...list.children]) if (!keep.has(child)) child.remove();
  nodes.forEach((node, i) => { if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null); });
  // A card rebuilt while focus was in it (the answer was sent, or came back from the stream):
  // focus its new state, so keyboard and screen-reader users stay where they were.
  // The card whose answer was just sent is focused by name: its buttons were disabled while it
  // was sent, which takes the focus from them.
  for (const [id, held] of cards) {
    if (held.hadFocus || id === focusOn) { held.hadFocus = false; held.node.querySelector("[data-focus]")?.focus(); }
  }
}

function clientReviewCard(review, planView, redraw) {
  const id = review.review_id;
  const headingId = `rv-${id}`;
  const key = cardKey(review);
  const badge = key === "awaiting" ? h("span", { className: "badge warn" }, "Waiting for your answer")
    : key === "sent" ? h("span", { className: "badge ok" }, "Answer sent")
      : review.client_agrees ? h("span", { className: "badge ok" }, "You agreed")
        : h("span", { className: "badge ok" }, "You gave your own view");
  const by = api.knownName(review.by);
  const purpose = checkpointPurpose(planView, review);
  return h("section", { className: "card review", "data-review": id, "data-state": key, "aria-labelledby": headingId },
    h("h2", { id: headingId }, `Review of “${goalWords(planView, review.goal_id)}”`),
    h("p", {}, badge, ` ${when(review.occurred_at)}, written down by ${by || "your clinician"}`),
    h("dl", { className: "review-facts" },
      purpose ? [h("dt", {}, "What the review was for"), h("dd", {}, purpose)] : null,
      h("dt", {}, "What you decided"), h("dd", {}, outcomeWords(review.outcome)),
      review.summary ? [h("dt", {}, "What your clinician wrote"), h("dd", { className: "words" }, review.summary)] : null,
      review.client_view ? [h("dt", {}, "Your view, as your clinician noted it"),
        h("dd", { className: "words" }, review.client_view)] : null),
    key === "awaiting" ? confirmForm(review, redraw) : answerShown(review));
}

// What the client answered: from the progress view, or (just sent) from this page.
function answerShown(review) {
  const mine = awaitingClient(review) ? sent.get(review.review_id) : {
    agrees: review.client_agrees, view: review.client_confirmation, at: review.confirmed_at };
  const on = mine.at ? ` (${when(mine.at)})` : "";
  const text = mine.agrees
    ? (mine.view ? `You agreed with this review${on}, and added:` : `You agreed with this review${on}.`)
    : `You see it differently${on}. Your own view:`;
  return h("div", { className: "notice answer" },
    h("p", { tabindex: -1, "data-focus": true },
      awaitingClient(review) ? "Thank you. Your answer is sent and your clinician can see it. " : "", text),
    mine.view ? h("p", { className: "words" }, `“${mine.view}”`) : null);
}

function confirmForm(review, redraw) {
  const id = review.review_id;
  const fieldId = nextId("view");
  const hintId = `${fieldId}-hint`;
  const countId = `${fieldId}-count`;
  const errorId = `${fieldId}-error`;
  const field = h("textarea", { id: fieldId, name: "client_view", maxlength: VIEW_MAX, rows: 4,
    "aria-describedby": `${hintId} ${countId}` });
  const count = h("p", { className: "muted count", id: countId }, counted(0));
  field.addEventListener("input", () => { count.textContent = counted(field.value.length); });
  const problem = h("div", { className: "problem" });
  const agree = h("button", { type: "button", className: "agree-review" }, "I agree");
  const differ = h("button", { type: "button", className: "quiet differ-review" }, "I see it differently");
  const keys = new Map();  // one Idempotency-Key per distinct answer, reused when it is retried

  const showProblem = (text, { fieldAtFault = false } = {}) => {
    const box = h("p", { className: "error", role: "alert", id: errorId, tabindex: -1, "data-focus": true }, text);
    replace(problem, box);
    field.setAttribute("aria-invalid", fieldAtFault ? "true" : "false");
    field.setAttribute("aria-describedby", fieldAtFault ? `${errorId} ${hintId} ${countId}` : `${hintId} ${countId}`);
    box.focus();
  };
  const send = async (agrees) => {
    const view = field.value.trim();
    if (!agrees && !view) {
      showProblem("Please write how you see it, in your own words, so your clinician can read it.", { fieldAtFault: true });
      return;
    }
    const body = { agrees, client_view: view || null };
    const sig = JSON.stringify(body);
    if (!keys.has(sig)) keys.set(sig, crypto.randomUUID());
    agree.disabled = true;
    differ.disabled = true;
    try {
      await api.request("POST", `/goals/${review.goal_id}/reviews/${id}/confirmation`, body,
        { idempotencyKey: keys.get(sig) });
      sent.set(id, { agrees, view: view || null, at: null });
      say(agrees ? "You agreed with the review." : "Your own view of the review is sent.");
      redraw(id);
    } catch (err) {
      showProblem(plainProblem(err), { fieldAtFault: err.problem?.field === "client_view" });
    } finally {
      agree.disabled = false;
      differ.disabled = false;
    }
  };
  agree.addEventListener("click", () => send(true));
  differ.addEventListener("click", () => send(false));
  return h("div", { className: "confirm" },
    h("h3", {}, "Does this match how you see it?"),
    problem,
    h("label", { for: fieldId }, "Your own view, in your words"),
    h("p", { className: "muted", id: hintId },
      `Needed if you see it differently; you can add it when you agree too. Up to ${VIEW_MAX.toLocaleString()} characters.`),
    field, count,
    h("div", { className: "actions" }, agree, differ));
}

function counted(n) { return `${n.toLocaleString()} of ${VIEW_MAX.toLocaleString()} characters`; }

// The API's problem detail (RFC 9457) as it is: it is written for people. Only the field's code
// name is left out (the page already points at the field).
export function plainProblem(err) {
  if (err?.problem?.detail) return err.problem.detail;
  if (err?.problem?.title) return err.problem.title;
  return err?.message || "That did not work. Please try again.";
}

// -- the clinician's side ------------------------------------------------------------------------

// The reviews of one goal as the clinician sees them: what was recorded beside the client's own
// answer (not yet, agreed, or their view in their words).
export function clinicianReviews(reviews) {
  if (!reviews.length) return null;
  return h("div", { className: "reviews" }, h("h4", {}, "Reviews"), reviews.map((r) => {
    const by = api.knownName(r.by);
    const proxy = r.confirmed_by_role === "proxy" ? " (by their proxy)" : "";
    const answer = awaitingClient(r)
      ? [h("p", {}, h("span", { className: "badge warn" }, "Not confirmed yet")), h("p", { className: "muted" },
        "Waiting for the client to confirm this review.")]
      : r.client_agrees
        ? [h("p", {}, h("span", { className: "badge ok" }, "The client agreed"), ` ${when(r.confirmed_at)}${proxy}`),
          r.client_confirmation ? h("p", { className: "words" }, `“${r.client_confirmation}”`) : null]
        : [h("p", {}, h("span", { className: "badge warn" }, "The client sees it differently"), ` ${when(r.confirmed_at)}${proxy}`),
          h("p", { className: "words" }, `“${r.client_confirmation || ""}”`)];
    return h("div", { className: "review side-by-side", "data-review": r.review_id,
      "data-state": awaitingClient(r) ? "awaiting" : r.client_agrees ? "agreed" : "differs" },
    h("div", {}, h("h5", {}, `Recorded ${when(r.occurred_at)}${by ? ` by ${by}` : ""}`),
      h("p", {}, `Outcome: ${outcomeWords(r.outcome)}`),
      r.summary ? h("p", { className: "words" }, r.summary) : null,
      r.client_view ? h("p", {}, `The client's view, as noted: “${r.client_view}”`) : null),
    h("div", {}, h("h5", {}, "The client's own view"), answer));
  }));
}
