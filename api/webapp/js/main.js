// The app's shell: sign-in, a hash router (the page never reloads, so the token held in memory
// lives as long as the tab), the navigation for each role, and the crisis dialog.
import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { closeAll } from "./live.js";
import { showCrisis } from "./crisis.js";
import { signInPage } from "./signin.js";
import * as client from "./client.js";
import * as clinician from "./clinician.js";
import * as reviews from "./reviews.js";
import * as auditor from "./auditor.js";
import * as admin from "./admin.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const helpNow = document.getElementById("help-now");
const signOutButton = document.getElementById("sign-out");

helpNow.addEventListener("click", showCrisis);
signOutButton.addEventListener("click", () => { api.signOut(); closeAll(); location.hash = "#/"; render(); });

const CLIENT_NAV = [["#/me", "My goals"], ["#/me/reviews", "Reviews"], ["#/me/progress", "My progress"],
  ["#/me/check-in", "Check in"]];
const STAFF_NAV = [["#/caseload", "Caseload"]];
const AUDITOR_NAV = [["#/audit", "Audit"]];
const ADMIN_NAV = [["#/admin", "Staff"], ["#/admin/settings", "Clinic settings"]];
// Which pages a role has: admins and auditors have their own (the API refuses them the
// clinical views), every other staff role has the clinician's.
const AREAS = { client: "client", admin: "admin", auditor: "auditor" };
const area = (role) => AREAS[role] || "staff";
const NAV = { client: CLIENT_NAV, staff: STAFF_NAV, auditor: AUDITOR_NAV, admin: ADMIN_NAV };
const HOME = { client: "#/me", staff: "#/caseload", auditor: "#/audit", admin: "#/admin" };

function navigation(items) {
  const here = location.hash || "#/";
  replace(nav, items.length ? h("ul", {}, items.map(([href, text]) => h("li", {},
    h("a", { href, "aria-current": here === href ? "page" : undefined }, text)))) : null);
}

const ROUTES = [
  [/^#\/me$/, client.plan, "client"],
  [/^#\/me\/reviews$/, reviews.clientReviews, "client"],
  [/^#\/me\/progress$/, client.progress, "client"],
  [/^#\/me\/check-in$/, client.checkIn, "client"],
  [/^#\/me\/check-in\/([\w-]+)$/, client.questionnaire, "client"],
  [/^#\/caseload$/, clinician.caseload, "staff"],
  [/^#\/clients\/([0-9a-f-]{36})$/, clinician.clientPage, "staff"],
  [/^#\/clients\/([0-9a-f-]{36})\/history$/, clinician.history, "staff"],
  [/^#\/audit$/, auditor.auditHome, "auditor"],
  [/^#\/audit\/clients\/([0-9a-f-]{36})$/, auditor.auditClient, "auditor"],
  [/^#\/admin$/, admin.staffPage, "admin"],
  [/^#\/admin\/settings$/, admin.settingsPage, "admin"],
];

export async function render() {
  closeAll();
  const who = api.principal();
  helpNow.hidden = !(who && who.role === "client");
  signOutButton.hidden = !who;
  if (!who) {
    navigation([]);
    const notice = sessionEnded;
    sessionEnded = false;
    await signInPage(main, () => {
      const target = home();
      if (location.hash === target) render(); else location.hash = target;  // a hash change renders
    });
    if (notice) main.querySelector("h1")?.after(h("p", { className: "error", role: "alert" },
      "Your sign-in has ended. Please sign in again."));
    return focusHeading();
  }
  const hash = location.hash;
  const mine = area(who.role);
  navigation(NAV[mine]);
  for (const [pattern, page, forArea] of ROUTES) {
    const match = hash.match(pattern);
    if (match && forArea === mine) {
      replace(main, h("p", {}, "Loading…"));
      try {
        await page(main, ...match.slice(1));
      } catch (err) {
        replace(main, h("h1", {}, "Something went wrong"), h("p", { className: "error", role: "alert" },
          err.problem?.detail || err.message));
      }
      return focusHeading();
    }
  }
  location.replace(home());
}

function home() { return HOME[area(api.principal()?.role)]; }

function focusHeading() {
  const heading = main.querySelector("h1");
  document.title = heading ? `${heading.textContent} – Alliance` : "Alliance";
  main.focus({ preventScroll: false });
}

let sessionEnded = false;
api.onSessionEnded(() => {
  closeAll();
  sessionEnded = true;
  if (location.hash === "#/") render(); else location.hash = "#/";
});

window.addEventListener("hashchange", render);
render();
