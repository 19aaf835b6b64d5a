-- What the HTTP API keeps beside the events: idempotency records and the access log.

-- Idempotency-Key records. Command responses carry ids, versions and receipts,
-- never personal text, so nothing here needs erasing; the request body is kept
-- only as an HMAC (keyed outside the database) to tell "same key, other body".
CREATE TABLE idempotency_keys (
  tenant_id     uuid NOT NULL,
  principal_id  uuid NOT NULL,
  key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
  method        text NOT NULL,
  route         text NOT NULL,
  body_mac      bytea NOT NULL,
  status        integer,          -- NULL while the first request is still running
  response      bytea,
  content_type  text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  completed_at  timestamptz,
  PRIMARY KEY (tenant_id, principal_id, key)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO :app_role;

-- Every read of a client's records by staff: who looked at what, when.
CREATE TABLE access_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  tenant_id   uuid NOT NULL,
  actor_id    uuid NOT NULL,
  actor_role  text NOT NULL,
  client_id   uuid NOT NULL,
  method      text NOT NULL,
  route       text NOT NULL,
  status      integer NOT NULL
);
CREATE INDEX access_log_client ON access_log (tenant_id, client_id, at);
-- The app appends to the access log and reads it; it never rewrites it.
GRANT SELECT, INSERT ON access_log TO :app_role;
CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the access log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER access_log_no_change BEFORE UPDATE OR DELETE ON access_log
  FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
