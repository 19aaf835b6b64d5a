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

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const helpNow = document.getElementById("help-now");
const signOutButton = document.getElementById("sign-out");

helpNow.addEventListener("click", showCrisis);
signOutButton.addEventListener("click", () => { api.signOut(); closeAll(); location.hash = "#/"; render(); });

const CLIENT_NAV = [["#/me", "My goals"], ["#/me/reviews", "Reviews"], ["#/me/progress", "My progress"],
  ["#/me/check-in", "Check in"]];
const STAFF_NAV = [["#/caseload", "Caseload"]];

function navigation(items) {
  const here = location.hash || "#/";
  replace(nav, items.length ? h("ul", {}, items.map(([href, text]) => h("li", {},
    h("a", { href, "aria-current": here === href ? "page" : undefined }, text)))) : null);
}

const ROUTES = [
  [/^#\/me$/, client.plan],
  [/^#\/me\/reviews$/, reviews.clientReviews],
  [/^#\/me\/progress$/, client.progress],
  [/^#\/me\/check-in$/, client.checkIn],
  [/^#\/me\/check-in\/([\w-]+)$/, client.questionnaire],
  [/^#\/caseload$/, clinician.caseload],
  [/^#\/clients\/([0-9a-f-]{36})$/, clinician.clientPage],
  [/^#\/clients\/([0-9a-f-]{36})\/history$/, clinician.history],
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
  const isClient = who.role === "client";
  navigation(isClient ? CLIENT_NAV : STAFF_NAV);
  for (const [pattern, page] of ROUTES) {
    const match = hash.match(pattern);
    if (match && (pattern.source.startsWith("^#\\/me") === isClient)) {
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

function home() { return api.principal()?.role === "client" ? "#/me" : "#/caseload"; }

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
