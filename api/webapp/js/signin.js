// Signing in. In development (alliance serve --demo) the demo's people are listed with
// short-lived tokens from /app/dev-sign-in. Otherwise the clinic's OpenID Connect provider is
// used with the authorization code flow and PKCE (RFC 7636): the code verifier waits in
// sessionStorage only across the provider's redirect; the tokens themselves stay in memory.
import * as api from "./api.js";
import { h, replace, errorBox } from "./dom.js";

export async function signInPage(main, done) {
  const options = await (await fetch("/app/sign-in-options")).json();
  if (options.oidc && new URLSearchParams(location.search).has("code")) {
    await finishOidc(main, options.oidc, done);
    return;
  }
  replace(main, h("h1", {}, "Sign in"));
  if (options.oidc) {
    const button = h("button", { type: "button", className: "oidc" }, "Sign in with your clinic account");
    const where = h("div");
    button.addEventListener("click", () => startOidc(options.oidc).catch((err) => where.append(errorBox(err))));
    main.append(h("div", { className: "actions" }, button), where);
  }
  if (options.development) {
    const response = await fetch("/app/dev-sign-in");
    if (!response.ok) {
      main.append(h("p", { className: "error" }, "The demo clinic is not loaded. Start with: alliance serve --demo"));
      return;
    }
    const { people } = await response.json();
    main.append(h("h2", {}, "Demo clinic"),
      h("p", {}, "Development mode: pick one of the demo clinic's people (invented, no real data)."),
      h("ul", { className: "people" }, people.map((person) => h("li", {},
        h("button", { type: "button", className: "quiet", "data-person": person.label, onclick: () => {
          api.signIn(person.token, { id: person.id, role: person.role, tenant_id: person.tenant_id }, people);
          done();
        } }, `${person.label} – ${person.role}`)))));
  }
  if (!options.oidc && !options.development) {
    main.append(h("p", {}, "Sign-in is not set up on this server: it needs ALLIANCE_OIDC_ISSUER and ALLIANCE_OIDC_CLIENT_ID."));
  }
}

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");

async function discovery(issuer) {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error("The sign-in service did not answer. Please try again.");
  return response.json();
}

async function startOidc(oidc) {
  const config = await discovery(oidc.issuer);
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem("alliance.pkce", JSON.stringify({ verifier, state }));
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({ response_type: "code", client_id: oidc.client_id, redirect_uri: redirectUri(),
    scope: oidc.scope, state, code_challenge: challenge, code_challenge_method: "S256" }).toString();
  location.assign(url);
}

const redirectUri = () => `${location.origin}/app/`;

async function finishOidc(main, oidc, done) {
  replace(main, h("h1", {}, "Signing in…"));
  const params = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem("alliance.pkce") || "null");
  sessionStorage.removeItem("alliance.pkce");
  history.replaceState(null, "", "/app/");  // the code leaves the address bar (and history) at once
  try {
    if (!saved || saved.state !== params.get("state")) throw new Error("This sign-in was not started here. Please try again.");
    const config = await discovery(oidc.issuer);
    const response = await fetch(config.token_endpoint, { method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", code: params.get("code"), redirect_uri: redirectUri(),
        client_id: oidc.client_id, code_verifier: saved.verifier }) });
    if (!response.ok) throw new Error("The sign-in service refused the sign-in. Please try again.");
    const tokens = await response.json();
    const token = tokens.access_token || tokens.id_token;
    api.signIn(token, null);
    api.signIn(token, await api.get("/me"));
    done();
  } catch (err) {
    api.signOut();
    main.append(errorBox(err), h("p", {}, h("a", { href: "/app/" }, "Start again")));
  }
}
