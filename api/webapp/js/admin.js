// The clinic administrator's pages: the staff (GET /staff; add, deactivate, invite to sign in)
// and the clinic's settings (crisis information, escalation policy, not-on-track alert policy,
// reminder text, staff work emails), each form filled from GET /clinic/settings.
// Every write goes through api.request with one Idempotency-Key per distinct request, reused
// when the same request is sent again (a retry after a lost answer records nothing twice), and
// a refusal (RFC 9457) is shown in the API's own words, next to the form, with the focus on it.
import * as api from "./api.js";
import { h, nextId, replace, say, whenTime } from "./dom.js";
import { plainProblem } from "./reviews.js";
import { roleWords, staffName } from "./history_words.js";

const STAFF_ROLES = ["clinician", "supervisor", "auditor", "admin"];

// A form's sending: the key per body, the button disabled meanwhile, a refusal shown and
// focused (the field it names marked invalid), a success shown and focused.
function sender(form, button, where) {
  const keys = new Map();
  return async (path, body, { done, fields = {} } = {}) => {
    const sig = `${path} ${JSON.stringify(body)}`;
    if (!keys.has(sig)) keys.set(sig, crypto.randomUUID());
    for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
    button.disabled = true;
    let box;
    try {
      const result = await api.request("POST", path, body, { idempotencyKey: keys.get(sig) });
      box = h("p", { className: "notice", tabindex: -1 }, done(result.data));
      say(box.textContent);
    } catch (err) {
      box = h("p", { className: "error", role: "alert", tabindex: -1 }, plainProblem(err));
      const field = fields[err.problem?.field];
      if (field) { field.setAttribute("aria-invalid", "true"); field.setAttribute("aria-errormessage", (box.id = nextId("problem"))); }
    } finally {
      button.disabled = false;
    }
    replace(where, box);
    box.focus();
    return box.className === "notice";
  };
}

function labelled(label, field, hint) {
  const hintId = hint ? `${field.id}-hint` : null;
  if (hintId) field.setAttribute("aria-describedby", hintId);
  return [h("label", { for: field.id }, label), hint ? h("p", { className: "muted", id: hintId }, hint) : null, field];
}

// -- staff -------------------------------------------------------------------------------------

export async function staffPage(main) {
  const list = h("section", { id: "staff", "aria-labelledby": "staff-h" });
  replace(main, h("h1", {}, "Staff"),
    h("p", {}, "The clinic's active staff. Deactivating someone stops their sign-in at once; their past entries stay in the record."),
    addStaffForm((notice) => drawStaff(list, notice)), list);
  await drawStaff(list);
}

// notice: what just changed, shown above the list with the focus on it (the row it was done in is gone).
async function drawStaff(list, notice = null) {
  const { staff } = await api.get("/staff");
  const me = api.principal().id;
  const said = notice ? h("p", { className: "notice", id: "staff-notice", tabindex: -1 }, notice) : null;
  replace(list, h("h2", { id: "staff-h" }, `Active staff (${staff.length})`), said,
    h("div", { className: "table-scroll", tabindex: 0, role: "region", "aria-label": "Active staff" },
      h("table", { id: "staff-list" }, h("caption", { className: "visually-hidden" }, "Active staff of the clinic"),
        h("thead", {}, h("tr", {}, ["Name and id", "Role", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, staff.map((person) => staffRow(person, person.staff_id === me, (text) => drawStaff(list, text)))))));
  said?.focus();
}

function staffRow(person, isMe, redraw) {
  const id = person.staff_id;
  const nameId = `staff-name-${id}`;
  const where = h("div", { className: "row-result" });
  const actions = h("div", { className: "actions" });
  const deactivate = h("button", { type: "button", className: "quiet deactivate", "aria-describedby": nameId }, "Deactivate");
  const invite = h("button", { type: "button", className: "quiet invite", "aria-describedby": nameId }, "Invite to sign in");
  deactivate.addEventListener("click", () => confirmDeactivation(person, actions, where, redraw, deactivate));
  invite.addEventListener("click", () => inviteToSignIn(person, invite, where));
  if (!isMe) actions.append(deactivate);  // an admin does not lock themselves out from here
  actions.append(invite);
  return h("tr", { "data-staff": id, "data-role": person.role },
    h("td", {}, h("span", { id: nameId }, staffName(id), isMe ? " (you)" : ""), h("br"), h("code", { className: "staff-id" }, id)),
    h("td", {}, roleWords(person.role)), h("td", {}, actions, where));
}

// Deactivation asks once more, in the row: the person's sign-in stops at once.
function confirmDeactivation(person, actions, where, redraw, deactivate) {
  const name = staffName(person.staff_id);
  const yes = h("button", { type: "button", className: "confirm-deactivate" }, `Yes, deactivate ${name}`);
  const keep = h("button", { type: "button", className: "quiet" }, "Keep them");
  const question = h("div", { className: "hint", role: "group", "aria-label": `Deactivate ${name}?` },
    h("p", {}, `Deactivate ${name}? Their sign-in stops working at once.`), h("div", { className: "actions" }, yes, keep));
  actions.hidden = true;
  replace(where, question);
  yes.focus();
  keep.addEventListener("click", () => { where.replaceChildren(); actions.hidden = false; deactivate.focus(); });
  const send = sender(question, yes, where);
  yes.addEventListener("click", async () => {
    const ok = await send(`/staff/${person.staff_id}/deactivation`, undefined, { done: () => `${name} is deactivated.` });
    if (ok) await redraw(`${name} is deactivated: their sign-in no longer works. Their past entries stay in the record.`);
    else actions.hidden = false;
  });
}

async function inviteToSignIn(person, button, where) {
  const form = button.closest("td");
  const send = sender(form, button, where);
  await send("/identity/invitations", { principal_id: person.staff_id, role: person.role }, {
    done: (issued) => [`Invitation for ${staffName(person.staff_id)}, valid until ${whenTime(issued.expires_at)}. `
      + "Give them this code once (it is not shown again): ", h("code", { className: "invitation-code" }, issued.code)] });
}

function addStaffForm(redraw) {
  const role = h("select", { id: nextId("new-role"), name: "role" }, STAFF_ROLES.map((r) => h("option", { value: r }, roleWords(r))));
  const staffId = h("input", { type: "text", id: nextId("new-staff-id"), name: "staff_id", autocomplete: "off", spellcheck: "false" });
  const where = h("div");
  const button = h("button", { type: "submit" }, "Add to staff");
  const form = h("form", { className: "card", id: "add-staff", novalidate: true, "aria-labelledby": "add-staff-h" },
    h("h2", { id: "add-staff-h" }, "Add a staff member"),
    labelled("Role", role),
    labelled("Their Alliance id (optional)", staffId, "Leave empty for someone new: Alliance makes an id. "
      + "To bring back someone deactivated, or give someone another role, enter their id."),
    h("div", { className: "actions" }, button), where);
  const send = sender(form, button, where);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { role: role.value, ...(staffId.value.trim() ? { staff_id: staffId.value.trim() } : {}) };
    const ok = await send("/staff", body, { fields: { role, staff_id: staffId },
      done: (result) => [`Added a ${roleWords(body.role)} with the id `, h("code", { className: "new-staff-id" }, result.created.staff_id),
        ". Next, invite them to sign in (in the list below)."] });
    if (ok) { staffId.value = ""; await redraw(null); }
  });
  return form;
}

// -- clinic settings ---------------------------------------------------------------------------

const readSettings = async () => (await api.request("GET", "/clinic/settings")).data;

// "Last changed … by …" under a form's heading, or that the default is in force; after a save it
// is read again (the API's record of the change, not the page's guess).
function changedLine(changed, unset) {
  const line = h("p", { className: "muted changed" });
  const show = (change) => replace(line, change
    ? `Last changed ${whenTime(change.at)} by ${change.by === api.principal().id ? "you" : staffName(change.by)}.` : unset);
  show(changed);
  return { line, refresh: async (pick) => show(pick(await readSettings())) };
}

export async function settingsPage(main) {
  const [{ staff }, settings] = await Promise.all([api.get("/staff"), readSettings()]);
  replace(main, h("h1", {}, "Clinic settings"),
    h("p", { className: "hint" }, "Each form shows the setting in force now. Saving one replaces it for the whole clinic; "
      + "the change is recorded."),
    crisisForm(settings.crisis_information),
    escalationForm(staff.filter((s) => ["clinician", "supervisor"].includes(s.role)), settings.escalation_policy),
    alertForm(settings.alert_policy), reminderForm(settings.reminder_text), emailForm(staff, settings.staff_contacts));
}

function reminderForm(current) {
  const subject = h("input", { type: "text", id: "reminder-subject", name: "subject", maxlength: 120, value: current.subject });
  const body = h("textarea", { id: "reminder-body", name: "body", rows: 3, maxlength: 2000 });
  body.value = current.body;
  const changed = changedLine(current.changed, "Not changed: the default text is in force.");
  const where = h("div");
  const button = h("button", { type: "submit" }, "Save the reminder");
  const form = h("form", { className: "card", id: "reminder-form", novalidate: true, "aria-labelledby": "reminder-h" },
    h("h2", { id: "reminder-h" }, "Reminder email"), changed.line,
    h("p", {}, "The email a client gets when a questionnaire is due, with a one-time link below your text. It can be read "
      + "on a lock screen or by someone else, so it never names the questionnaire (Alliance refuses a text that does)."),
    labelled("Subject (one line, up to 120 characters)", subject), labelled("Text (up to 2,000 characters)", body),
    h("div", { className: "actions" }, button), where);
  const send = sender(form, button, where);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const ok = await send("/clinic/reminder-text", { subject: subject.value.trim(), body: body.value.trim() },
      { fields: { subject, body }, done: () => "Saved. Reminders use the new text from now on." });
    if (ok) await changed.refresh((s) => s.reminder_text.changed);
  });
  return form;
}

// A staff member's work email, where Alliance notifies them (an escalated risk flag, an alert).
// The API says only whether one is set (the address is sealed personal data), so the field starts empty.
function emailForm(staff, contacts) {
  const isSet = new Map(contacts.map((c) => [c.staff_id, c.has_email]));
  const who = h("select", { id: "email-staff", name: "staff_id" },
    staff.map((s) => h("option", { value: s.staff_id }, `${staffName(s.staff_id)} (${roleWords(s.role)})`)));
  const email = h("input", { type: "email", id: "staff-email", name: "email", autocomplete: "off", maxlength: 320 });
  const status = h("p", { className: "muted", id: "email-status", "aria-live": "polite" });
  const showStatus = () => replace(status, isSet.get(who.value)
    ? `${staffName(who.value)} has a work email set (not shown here: it is stored sealed).`
    : `${staffName(who.value)} has no work email set.`);
  who.addEventListener("change", showStatus);
  showStatus();
  const where = h("div");
  const button = h("button", { type: "submit" }, "Save the work email");
  const form = h("form", { className: "card", id: "email-form", novalidate: true, "aria-labelledby": "email-h" },
    h("h2", { id: "email-h" }, "Work email for notifications"),
    labelled("Staff member", who), status,
    labelled("Work email", email, "Leave empty to remove it. Stored sealed, like other personal data."),
    h("div", { className: "actions" }, button), where);
  const send = sender(form, button, where);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const address = email.value.trim() || null;
    const staffId = who.value;
    const ok = await send(`/staff/${staffId}/contact`, { email: address }, { fields: { email },
      done: () => (address ? `Saved. ${staffName(staffId)} is notified at ${address}.` : `Removed ${staffName(staffId)}'s work email.`) });
    if (ok) { isSet.set(staffId, address !== null); showStatus(); }
  });
  return form;
}

function crisisForm(current) {
  const text = h("textarea", { id: "crisis-text", name: "text", rows: 4, maxlength: 2000 });
  const contacts = h("textarea", { id: "crisis-contacts", name: "contacts", rows: 3 });
  text.value = current.text ?? "";
  contacts.value = current.contacts.join("\n");
  const changed = changedLine(current.changed, `Not set by the clinic: clients are shown “${current.shown_text}”`);
  const where = h("div");
  const button = h("button", { type: "submit" }, "Save the crisis information");
  const form = h("form", { className: "card", id: "crisis-form", novalidate: true, "aria-labelledby": "crisis-h" },
    h("h2", { id: "crisis-h" }, "Crisis information"), changed.line,
    h("p", {}, "What clients see behind “Get help now”, when they give a risk answer, and in their plan."),
    labelled("What to do, in plain words", text), labelled("Contacts (one a line)", contacts, "For example: Crisis line: 0000 000 000"),
    h("div", { className: "actions" }, button), where);
  const send = sender(form, button, where);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const lines = contacts.value.split("\n").map((l) => l.trim()).filter(Boolean);
    const ok = await send("/clinic/crisis-information", { text: text.value.trim(), contacts: lines },
      { fields: { text, contacts }, done: () => "Saved. Clients see the new crisis information from now on." });
    if (ok) await changed.refresh((s) => s.crisis_information.changed);
  });
  return form;
}

const numberOrNull = (field) => (field.value.trim() === "" ? null : Number(field.value));

function escalationForm(dutyStaff, current) {
  const hours = h("input", { type: "number", id: "escalation-hours", name: "escalation_interval_hours", min: 0, max: 72,
    step: "any", inputmode: "decimal", value: current.escalation_interval_hours });
  const dutyId = current.duty_clinician_id;
  // A duty clinician since deactivated stays named (and chosen) until another is saved.
  const gone = dutyId && !dutyStaff.some((s) => s.staff_id === dutyId)
    ? h("option", { value: dutyId }, `${staffName(dutyId)} (no longer active)`) : null;
  const duty = h("select", { id: "duty-clinician", name: "duty_clinician_id" },
    h("option", { value: "" }, "No duty clinician"),
    dutyStaff.map((s) => h("option", { value: s.staff_id }, `${staffName(s.staff_id)} (${roleWords(s.role)})`)), gone);
  duty.value = dutyId || "";
  const changed = changedLine(current.changed, "Not changed: the default is in force (24 hours, no duty clinician).");
  const where = h("div");
  const button = h("button", { type: "submit" }, "Save the escalation policy");
  const form = h("form", { className: "card", id: "escalation-form", novalidate: true, "aria-labelledby": "escalation-h" },
    h("h2", { id: "escalation-h" }, "When an unanswered risk flag escalates"), changed.line,
    labelled("Hours before escalation", hours, "More than 0 and at most 72; the default is 24."),
    labelled("Duty clinician", duty, "Told when a flag escalates; an active clinician or supervisor."),
    h("div", { className: "actions" }, button), where);
  const send = sender(form, button, where);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const ok = await send("/clinic/escalation-policy", { escalation_interval_hours: numberOrNull(hours), duty_clinician_id: duty.value || null },
      { fields: { escalation_interval_hours: hours, duty_clinician_id: duty },
        done: () => `Saved. An unanswered risk flag escalates after ${hours.value} hours.` });
    if (ok) await changed.refresh((s) => s.escalation_policy.changed);
  });
  return form;
}

function alertForm(current) {
  const after = h("input", { type: "number", id: "alert-after", name: "after_administrations", min: 2, max: 100, step: 1,
    inputmode: "numeric", value: current.after_administrations });
  const weeks = h("input", { type: "number", id: "alert-weeks", name: "after_weeks", min: 0, max: 104, step: "any", inputmode: "decimal",
    value: current.after_weeks ?? undefined });
  const changed = changedLine(current.changed, "Not changed: the default is in force (8 answers, no limit in weeks).");
  const where = h("div");
  const button = h("button", { type: "submit" }, "Save the alert policy");
  const form = h("form", { className: "card", id: "alert-form", novalidate: true, "aria-labelledby": "alert-h" },
    h("h2", { id: "alert-h" }, "When a client is not on track"), changed.line,
    h("p", {}, "A not-on-track alert is raised when a questionnaire shows no reliable improvement after this many answers, "
      + "or after this many weeks from the first, whichever comes first."),
    labelled("After how many answers", after, "2 to 100; the default is 8."),
    labelled("Or after how many weeks (optional)", weeks, "More than 0 and at most 104; leave empty for no limit in weeks."),
    h("div", { className: "actions" }, button), where);
  const send = sender(form, button, where);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const ok = await send("/clinic/alert-policy", { after_administrations: numberOrNull(after), after_weeks: numberOrNull(weeks) },
      { fields: { after_administrations: after, after_weeks: weeks }, done: () => "Saved. Alerts follow the new policy from now on." });
    if (ok) await changed.refresh((s) => s.alert_policy.changed);
  });
  return form;
}
