// A third-party page: it asks Alliance (another origin, CORS) for a stream ticket with a bearer
// token, then follows the client's progress with native EventSource. The test hands it the API's
// address, the client and the token in the fragment (never sent to this page's server).
const params = new URLSearchParams(location.hash.slice(1));
const api = params.get("api");
const state = document.getElementById("state");
const events = document.getElementById("events");

async function main() {
  let ticket;
  try {
    const r = await fetch(`${api}/clients/${params.get("client")}/progress/stream-tickets`, {
      method: "POST", headers: { Authorization: `Bearer ${params.get("token")}`, "Content-Type": "application/json" },
      body: "{}" });
    ticket = await r.json();
  } catch (err) {
    state.textContent = `refused: ${err.name}`;
    return;
  }
  const source = new EventSource(new URL(ticket.stream_url, api));
  source.addEventListener("ready", () => { state.textContent = "ready"; });
  source.addEventListener("progress", (e) => {
    const view = JSON.parse(e.data);
    const mood = view.measures.find((m) => m.instrument_id === "mood_diary");
    const li = document.createElement("li");
    li.dataset.latest = String(mood?.latest ?? "");
    li.dataset.at = String(Date.now());
    li.textContent = `progress ${e.lastEventId}: mood ${mood?.latest}`;
    events.append(li);
  });
  source.addEventListener("error", () => { if (source.readyState === EventSource.CLOSED) state.textContent = "closed"; });
}
main();
