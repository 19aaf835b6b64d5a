// The clinic's crisis information: one tap away on every client page ("Get help now"), and
// shown at once when a risk answer is chosen or the server answers a measurement with it.
import * as api from "./api.js";
import { h, replace } from "./dom.js";

const crisisDialog = document.getElementById("crisis");

let crisis = null;
export function setCrisis(info) { crisis = info; }
export async function showCrisis() {
  if (!crisis) {
    try { crisis = (await api.get(`/clients/${api.principal().id}/plan`)).crisis_information; } catch { /* shown below */ }
  }
  const body = document.getElementById("crisis-body");
  replace(body,
    h("p", { className: "words" }, crisis?.text
      || "If you are in danger or might harm yourself, call your local emergency number now."),
    crisis?.contacts?.length ? h("ul", {}, crisis.contacts.map((c) => h("li", {}, c))) : null);
  if (!crisisDialog.open) crisisDialog.showModal();
}
