// The public HTTP API, as any frontend calls it: a bearer token kept in this module's memory
// only (never localStorage or a cookie), JSON bodies, an Idempotency-Key on every POST so a
// retry after a lost answer records nothing twice.
const session = { token: null, principal: null, people: [] };

export function signIn(token, principal, people = []) {
  session.token = token;
  session.principal = principal;
  session.people = people;
}
export function signOut() { session.token = null; session.principal = null; session.people = []; }

// Called when the API no longer accepts the token (it expired, or the account was unlinked):
// the page forgets it and asks to sign in again.
let ended = () => {};
export function onSessionEnded(callback) { ended = callback; }
export function expire() { if (session.token) { signOut(); ended(); } }
export function principal() { return session.principal; }
export function signedIn() { return session.token !== null; }

// A display name for an id: the demo's sign-in list names its people; otherwise a short id
// (Alliance keeps no names for clients).
export function nameOf(id) {
  const person = session.people.find((p) => p.id === id);
  return person ? person.label.replace(" (client)", "") : `Client ${String(id).slice(0, 8)}`;
}

// A display name for a person the sign-in list names (the demo's), else null: the caller then
// says "your clinician" rather than guessing.
export function knownName(id) {
  const person = session.people.find((p) => p.id === id);
  return person ? person.label.replace(" (client)", "") : null;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && (problem.detail || problem.title) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// The request never got an answer (offline, or the server unreachable). Whether it was
// recorded is unknown, which is why a retry sends the same Idempotency-Key (see request).
export class NetworkError extends ApiError {
  constructor() {
    super(0, null);
    this.message = "We could not reach the clinic's server. Check your internet connection and try again.";
  }
}

// options.idempotencyKey: the key of an earlier attempt of the same request, so a retry after
// a lost answer is answered from the first one instead of being recorded again.
export async function request(method, path, body, { ifMatch, idempotencyKey } = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "POST") headers["Idempotency-Key"] = idempotencyKey || crypto.randomUUID();
  if (ifMatch) headers["If-Match"] = ifMatch;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new NetworkError();  // fetch rejects only when no answer came
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }  // e.g. a proxy's HTML error page
  if (response.status === 401 && session.token) { signOut(); ended(); }
  if (!response.ok) throw new ApiError(response.status, data);
  // text: the body exactly as sent (a signed export is downloaded as it came, not re-serialised)
  return { data, etag: response.headers.get("ETag"), text, type: response.headers.get("Content-Type") };
}

export const get = async (path) => (await request("GET", path)).data;
export const post = async (path, body = {}, options = {}) => (await request("POST", path, body, options)).data;

let instruments = null;
export async function instrumentList() {
  if (!instruments) instruments = (await get("/instruments")).instruments;
  return instruments;
}
export async function instrument(id, version) {
  const all = await instrumentList();
  return all.find((d) => d.id === id && version && d.version === version) || latest(all, id);
}
// The newest installed version of an instrument (what a new answer is scored with by default).
export function latest(all, id) {
  const versions = all.filter((d) => d.id === id);
  return versions.sort((x, y) => x.version.localeCompare(y.version, undefined, { numeric: true })).at(-1);
}
