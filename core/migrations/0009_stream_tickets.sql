-- Stream tickets (api/stream_tickets.py): how a browser's EventSource, which cannot send an
-- Authorization header, opens a stream. A ticket is issued to a bearer-authenticated caller for
-- one stream (a client's progress, or the caller's caseload); only its SHA-256 is kept. Opening
-- the stream deletes the row (single use, on whichever worker); one not opened by ``open_by``
-- is refused and swept by a later issue. ``grant_ends_at`` is the issuing token's ``exp``: the
-- stream it opens ends then. Ids only: no personal data.
CREATE TABLE stream_tickets (
  ticket_hash   bytea PRIMARY KEY CHECK (octet_length(ticket_hash) = 32),
  tenant_id     uuid NOT NULL,
  principal_id  uuid NOT NULL,
  role          text NOT NULL,
  purpose       text NOT NULL CHECK (purpose IN ('progress', 'caseload')),
  client_id     uuid,
  issued_at     timestamptz NOT NULL,
  open_by       timestamptz NOT NULL,
  grant_ends_at timestamptz NOT NULL,
  CHECK ((purpose = 'progress') = (client_id IS NOT NULL)),
  CHECK (open_by <= grant_ends_at)
);
CREATE INDEX stream_tickets_open_by ON stream_tickets (open_by);
GRANT SELECT, INSERT, DELETE ON stream_tickets TO :app_role;
