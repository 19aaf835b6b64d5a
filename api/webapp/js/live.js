// Live views through native EventSource. EventSource cannot send an Authorization header, so
// the page asks for a short-lived stream ticket with its bearer token (POST .../stream-tickets)
// and opens the ticket's stream_url. A ticket opens one stream once: when the connection drops,
// EventSource's own reconnect is refused (401) and it stops, so we ask for a new ticket and
// reopen with ?after=<the last event id>, missing nothing.
import * as api from "./api.js";

const { post } = api;

const open = new Set();

export function closeAll() {
  for (const stream of open) stream.close();
  open.clear();
}

export function follow(ticketPath, handlers, { onStatus = () => {} } = {}) {
  let source = null;
  let lastId = null;
  let stopped = false;
  let failures = 0;
  const stream = {
    close() { stopped = true; if (source) source.close(); open.delete(stream); },
  };
  open.add(stream);

  async function connect() {
    if (stopped) return;
    let ticket;
    try {
      ticket = await post(ticketPath, {});
    } catch (err) {
      onStatus("offline", err);
      retry();
      return;
    }
    if (stopped) return;
    const url = new URL(ticket.stream_url, location.origin);
    if (lastId) url.searchParams.set("after", lastId);
    source = new EventSource(url);
    source.addEventListener("open", () => { failures = 0; onStatus("live"); });
    source.addEventListener("ready", (e) => { if (e.lastEventId) lastId = e.lastEventId; });
    for (const [type, handle] of Object.entries(handlers)) {
      source.addEventListener(type, (e) => {
        if (e.lastEventId) lastId = e.lastEventId;
        handle(JSON.parse(e.data));
      });
    }
    source.addEventListener("closed", (e) => {
      // The server ended the stream and says why; only an ending that a new ticket can fix is reopened.
      const info = JSON.parse(e.data);
      if (info.resume_from) lastId = info.resume_from;
      source.close();
      if (info.reason === "too_slow" || info.reason === "unavailable") retry();
      else if (info.reason === "token_expired") { stopped = true; onStatus("ended", info); api.expire(); }
      else { stopped = true; onStatus("ended", info); }
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) { onStatus("reconnecting"); retry(); }
    });
  }

  function retry() {
    if (stopped) return;
    failures += 1;
    setTimeout(connect, Math.min(30000, 500 * 2 ** Math.min(failures, 6)));
  }

  connect();
  return stream;
}
