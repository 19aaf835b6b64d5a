// The decision history (GET /clients/{id}/history) in plain words: each entry as a sentence
// naming who did it and in which role, and the goals as the entries up to a moment leave them.
// Pure functions of the view's entries (no requests), so the auditor's page can replay any
// as-of view the API returns the same way.
import { knownName } from "./api.js";
import { outcomeWords } from "./reviews.js";
import { when } from "./dom.js";

const ROLE_WORDS = { client: "client", proxy: "the client's proxy", clinician: "clinician", supervisor: "supervisor",
  admin: "administrator", auditor: "auditor", system: "system" };
export const roleWords = (role) => ROLE_WORDS[role] || String(role).replaceAll("_", " ");

const SCOPE_WORDS = { goal_setting: "setting goals together", measurement: "questionnaires and measures",
  care_team_sharing: "sharing their record with the care team" };
const scopeWords = (scope) => SCOPE_WORDS[scope] || String(scope).replaceAll("_", " ");

// Instruments by their title (GET /instruments, handed in once by the page), else their id.
let titles = new Map();
export function useInstruments(definitions) { titles = new Map(definitions.map((d) => [d.id, d.title])); }
const instrumentName = (id) => titles.get(id) || String(id).replaceAll("_", " ");

// Staff have no names in Alliance: a name where the sign-in list knows one, else a short id.
export function staffName(id) { return knownName(id) || `Staff member ${String(id).slice(0, 8)}`; }

// Who did it: "The client", or the staff member's name with their role.
export function actorWords(entry, clientId) {
  if (entry.actor_id === clientId) return { name: "The client", role: "client" };
  if (entry.actor_role === "system") return { name: "Alliance", role: "system" };
  return { name: staffName(entry.actor_id), role: roleWords(entry.actor_role) };
}

const quote = (text) => (text ? `“${text}”` : "");
const party = (d) => (d.on_behalf ? " (on the client's behalf)" : "");

// The goals' words as the entries up to here name them (a goal is named by its words in every sentence).
export function goalTracker() {
  const words = new Map();
  const changes = new Map();
  return {
    words: (goalId) => words.get(goalId) || "a goal",
    change: (changeId) => changes.get(changeId),
    see(entry) {
      const d = entry.details || {};
      const text = d.client_words || d.statement;  // an accepted change of aim leaves the goal's words as they are
      if (["goal.proposed", "goal.revised", "goal.restated"].includes(entry.type) && text) words.set(entry.goal_id, text);
      if (entry.type === "goal.change_proposed") changes.set(d.change_id, d);
    },
  };
}

// One entry as { text, quote }: what happened in words, and the words people wrote, quoted.
export function entryWords(entry, goals) {
  const d = entry.details || {};
  const goal = entry.goal_id ? quote(goals.words(entry.goal_id)) : "";
  switch (entry.type) {
    case "client.enrolled": return { text: `Enrolled the client, with ${staffName(d.primary_clinician_id)} as primary clinician.` };
    case "care_team.member_added": return { text: `Added ${staffName(d.member_id)} (${roleWords(d.member_role)}) to the care team.` };
    case "care_team.member_removed": return { text: `Removed ${staffName(d.member_id)} from the care team.`, quote: d.reason };
    case "care_team.primary_changed": return { text: `Made ${staffName(d.clinician_id)} the primary clinician.` };
    case "client.discharged": return { text: "Discharged the client.", quote: d.reason };
    case "proxy.authorised": return { text: "Authorised a proxy to act for the client.", quote: d.basis };
    case "proxy.revoked": return { text: "Revoked a proxy's authority." };
    case "consent.granted": return { text: `Consented to ${scopeWords(d.scope)} (consent text ${d.text_version}`
      + `${d.mode && d.mode !== "self" ? `, given ${String(d.mode).replaceAll("_", " ")}` : ""}), in force from ${when(d.effective_at)}.` };
    case "consent.withdrawn": return { text: `Withdrew consent to ${scopeWords(d.scope)}, from ${when(d.effective_at)}.` };
    case "measurement.recorded": {
      const total = d.scores && Object.keys(d.scores).length ? ` Score ${Object.values(d.scores)[0]}${d.band ? ` (${d.band})` : ""}.` : "";
      return { text: `Recorded answers to ${instrumentName(d.instrument_id)}.${total}${d.risk_items?.length ? " A risk answer was given." : ""}` };
    }
    case "measurement.entered_in_error": return { text: "Marked a measurement as entered in error.", quote: d.reason };
    case "measurement.interpreted": return { text: "Added their own reading of a measurement:", quote: d.text };
    case "note.recorded": return { text: "Wrote a clinical note:", quote: d.text };
    case "note.entered_in_error": return { text: "Marked a note as entered in error.", quote: d.reason };
    case "risk.flag_raised": return { text: `A risk flag was raised (from ${String(d.source).replaceAll("_", " ")}).`, quote: d.note };
    case "risk.flag_acknowledged": return { text: "Acknowledged a risk flag. Action taken:", quote: d.action_taken };
    case "feedback.given": return { text: `Gave feedback${d.rating != null ? ` (rating ${d.rating} of 10)` : ""}:`, quote: d.text };
    case "feedback.answered": return { text: "Answered the client's feedback:", quote: d.text };
    case "relapse_plan.updated": return { text: `Updated the relapse-prevention plan (version ${d.plan_version}).` };
    case "legal_hold.placed": return { text: "Placed a legal hold (the record cannot be erased while it holds).", quote: d.reason };
    case "legal_hold.released": return { text: "Lifted a legal hold." };
    case "erasure.requested": return { text: "Asked for the client's data to be erased." };
    case "erasure.completed": return { text: "The client's data was erased (its key destroyed)." };
    case "episode.measure_attached": return { text: `Attached ${instrumentName(d.instrument_id)} to the care episode.` };
    case "episode.measure_detached": return { text: `Detached ${instrumentName(d.instrument_id)} from the care episode.` };
    case "alert.raised": return { text: `A not-on-track alert was raised for ${instrumentName(d.instrument_id)}.`, quote: d.criterion };
    case "alert.acknowledged": return { text: "Acknowledged a not-on-track alert. Action taken:", quote: d.action_taken };
    case "goal.proposed": return { text: `Proposed a goal (version ${d.version})${party(d)}:`, quote: d.client_words || d.statement };
    case "goal.restated": return { text: `Restated the goal in the client's own words (version ${d.version})${party(d)}:`, quote: d.client_words };
    case "goal.reflected": return { text: `Reflected ${goal} back:`, quote: d.reflection };
    case "goal.revised": return { text: `Revised the goal (version ${d.version})${party(d)}:`, quote: d.client_words || d.statement };
    case "goal.agreed": return { text: `Agreed to version ${d.version} of ${goal}${party(d)}.` };
    case "goal.activated": return { text: `Both agreed: ${goal} is active (version ${d.version}).` };
    case "goal.declined": return { text: `Declined the goal ${goal}.`, quote: d.reason };
    case "goal.withdrawn": return { text: `Withdrew the goal ${goal}.`, quote: d.reason };
    case "goal.change_proposed": return { text: `Proposed ${changeWords(d, goal)}${party(d)}.`, quote: d.rationale ? `Why: ${d.rationale}` : null };
    case "goal.change_accepted": {
      const change = goals.change(d.change_id);
      return { text: `Accepted ${change ? changeWords(change, goal) : `the proposed change to ${goal}`} (now version ${d.new_version})${party(d)}.` };
    }
    case "goal.change_declined": case "goal.change_withdrawn": {
      const change = goals.change(d.change_id);
      const what = change ? changeWords(change, goal) : `the proposed change to ${goal}`;
      return entry.type === "goal.change_declined" ? { text: `Declined ${what}.`, quote: d.reason } : { text: `Withdrew ${what}.` };
    }
    case "goal.milestone_added": return { text: `Added a milestone to ${goal}${d.provisional_date ? `, for ${when(d.provisional_date)}` : ""}:`, quote: d.description };
    case "goal.milestone_reached": return { text: `Reached a milestone of ${goal}.` };
    case "goal.checkpoint_scheduled": return { text: `Planned a review of ${goal} for ${when(d.provisional_date)}:`, quote: d.purpose };
    case "goal.checkpoint_cancelled": return { text: `Cancelled a planned review of ${goal}.` };
    case "goal.barrier_noted": return { text: `Noted something in the way of ${goal}:`, quote: d.text };
    case "goal.contingency_planned": return { text: `Planned what to do if ${quote(d.trigger)}:`, quote: d.response };
    case "goal.resource_noted": return { text: `Noted something that helps with ${goal}:`, quote: d.text };
    case "goal.intervention_linked": return { text: `Linked an intervention (${String(d.kind).replaceAll("_", " ")}) to ${goal}:`, quote: d.detail };
    case "goal.item_removed": return { text: `Removed a ${String(d.item_kind).replaceAll("_", " ")} from ${goal}.` };
    case "goal.attainment_scale_set": return { text: `Set the goal attainment scale of ${goal}.` };
    case "goal.measure_attached": return { text: `Attached ${instrumentName(d.instrument_id)} to ${goal}.` };
    case "goal.measure_detached": return { text: `Detached ${instrumentName(d.instrument_id)} from ${goal}.` };
    case "goal.review_recorded": return { text: `Recorded a review of ${goal}: ${outcomeWords(d.outcome)}.`, quote: d.summary || d.client_view };
    case "goal.review_confirmed": return d.agrees
      ? { text: `Agreed with the review of ${goal}.`, quote: d.client_view }
      : { text: `Sees the review of ${goal} differently:`, quote: d.client_view };
    case "goal.review_entered_in_error": return { text: `Marked a review of ${goal} as entered in error.`, quote: d.reason };
    case "goal.paused": return { text: `Paused ${goal}.`, quote: d.reason };
    case "goal.resumed": return { text: `Resumed ${goal}.` };
    case "goal.closed": return { text: `Closed ${goal}: ${String(d.outcome).replaceAll("_", " ")}.`, quote: d.reason };
    case "goal.maintenance_started": return { text: `Moved ${goal} to keeping it up.`, quote: d.reason };
    case "goal.entered_in_error": return { text: `Marked ${goal} as made by mistake.`, quote: d.reason };
    default: return { text: `${entry.type.replaceAll(".", ": ").replaceAll("_", " ")}.` };
  }
}

function changeWords(change, goal) {
  if (change.kind === "target" && change.new_text) return `changing the aim of ${goal} to ${quote(change.new_text)}`;
  if (change.kind === "due_date" && change.new_date) return `moving the date of ${goal} to ${when(change.new_date)}`;
  return `a change to ${goal} (${String(change.kind).replaceAll("_", " ")})`;
}

const CLOSED = { achieved: "achieved", not_achieved: "not_achieved", discontinued: "discontinued" };

// The goals as the entries leave them: words, version, status, who agreed to which version,
// changes still open. Replaying the entries of an as-of view gives the goals as they were then.
export function goalsAsRecorded(entries) {
  const goals = new Map();
  const tracker = goalTracker();
  for (const entry of entries) {
    tracker.see(entry);
    if (!entry.goal_id) continue;
    const d = entry.details || {};
    const goal = goals.get(entry.goal_id) || { goal_id: entry.goal_id, status: "proposed", version: 1,
      agreed: {}, openChanges: new Map(), due_date: null };
    goals.set(entry.goal_id, goal);
    switch (entry.type) {
      case "goal.proposed": case "goal.revised": case "goal.restated":
        goal.version = d.version;
        goal.agreed = {};  // a new version is agreed afresh
        if (d.due_date) goal.due_date = d.due_date;
        break;
      case "goal.agreed": goal.agreed[d.party] = d.version; break;
      case "goal.activated": goal.status = "active"; break;
      case "goal.declined": goal.status = "declined"; break;
      case "goal.withdrawn": goal.status = "withdrawn"; break;
      case "goal.paused": goal.status = "paused"; break;
      case "goal.resumed": goal.status = "active"; break;
      case "goal.closed": goal.status = CLOSED[d.outcome] || "not_achieved"; break;
      case "goal.maintenance_started": goal.status = "maintenance"; break;
      case "goal.entered_in_error": goal.status = "entered_in_error"; break;
      case "goal.change_proposed": goal.openChanges.set(d.change_id, d); break;
      case "goal.change_accepted": {
        const change = goal.openChanges.get(d.change_id);
        if (change?.kind === "due_date" && change.new_date) goal.due_date = change.new_date;
        goal.version = d.new_version;
        if (change?.kind === "target" && change.new_text) goal.aim = change.new_text;
        // both parties accepted the change, so both agree to the version it makes (as core/goal.py has it)
        goal.agreed = { client: d.new_version, clinician: d.new_version };
        goal.openChanges.delete(d.change_id);
        break;
      }
      case "goal.change_declined": case "goal.change_withdrawn": goal.openChanges.delete(d.change_id); break;
      default: break;
    }
    goal.words = tracker.words(entry.goal_id);
  }
  return [...goals.values()];
}
