-- The event store: append-only events, stream heads, subject data keys.
-- :app_role is replaced by the quoted app role name when the migration runs.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :app_role_literal) THEN
    BEGIN
      CREATE ROLE :app_role LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    EXCEPTION WHEN duplicate_object THEN NULL;  -- another database's migration won the race
    END;
  END IF;
END
$$;

-- Stream heads: one row per stream. Optimistic concurrency is a conditional
-- update of this row (it also serialises appends to the *same* stream only).
CREATE TABLE streams (
  stream_id  text PRIMARY KEY CHECK (length(stream_id) BETWEEN 1 AND 200),
  tenant_id  uuid NOT NULL,
  version    bigint NOT NULL CHECK (version >= 0),
  head_hash  bytea NOT NULL
);

CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events (
  position        bigint NOT NULL,
  -- Transaction id of the writer: readers of the global order only read below
  -- the oldest running transaction (see core/events/postgres.py), so an event
  -- committed late by a concurrent writer is never skipped.
  tx_id           xid8 NOT NULL DEFAULT pg_current_xact_id(),
  event_id        uuid NOT NULL,
  stream_id       text NOT NULL,
  version         bigint NOT NULL CHECK (version >= 1),
  type            text NOT NULL,
  schema_version  integer NOT NULL,
  tenant_id       uuid NOT NULL,
  subject_id      uuid NOT NULL,
  actor_id        uuid NOT NULL,
  actor_role      text NOT NULL,
  occurred_at     timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL,
  correlation_id  uuid,
  causation_id    uuid,
  key_id          uuid,
  hash_scheme     smallint NOT NULL,
  payload         bytea NOT NULL,   -- JSON of the payload, personal fields blanked
  secret          bytea,            -- AES-GCM nonce || ciphertext of the personal fields
  digest          bytea NOT NULL,   -- sha256 over the stored content (docs/event-store.md)
  hash            bytea NOT NULL,   -- sha256(prev hash || digest || position || tx || recorded)
  PRIMARY KEY (stream_id, version)
);
-- Indexes are what appends pay for, so only those reads need: idempotency (event id),
-- the global order, and a client's events in order (as-of replays, exports). The
-- position is unique by its sequence; tenant-filtered reads walk the global order.
CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE INDEX events_global_order ON events (tx_id, position);
CREATE INDEX events_subject_order ON events (subject_id, tx_id, position);

-- Immutable means immutable: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are immutable: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Per-subject data keys, wrapped by a key-encryption key that never enters the
-- database. Erasure sets wrapped_key to NULL: the personal fields of every
-- event of that subject become unreadable everywhere at once.
CREATE TABLE data_keys (
  subject_id   uuid PRIMARY KEY,
  tenant_id    uuid NOT NULL,
  key_id       uuid NOT NULL UNIQUE,
  wrapped_key  bytea,
  created_at   timestamptz NOT NULL DEFAULT now(),
  destroyed_at timestamptz,
  CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);
CREATE FUNCTION data_keys_only_destroy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'data keys are destroyed, not deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.wrapped_key IS NULL OR NEW.wrapped_key IS NOT NULL
     OR NEW.key_id <> OLD.key_id OR NEW.subject_id <> OLD.subject_id THEN
    RAISE EXCEPTION 'a data key can only be destroyed, once' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER data_keys_guard BEFORE UPDATE OR DELETE ON data_keys
  FOR EACH ROW EXECUTE FUNCTION data_keys_only_destroy();

-- Append to one stream in one statement (one round trip, one short transaction
-- when called in autocommit). Returns one row per event; `duplicate` is true when
-- these event ids were already recorded (an idempotent retry).
-- Raises SQLSTATE 'AL409' on a version conflict (DETAIL = actual version) and
-- 'AL422' when the event ids exist but do not match this append.
CREATE FUNCTION append_events(
  p_stream text, p_tenant uuid, p_expected bigint,
  p_ids uuid[], p_types text[], p_schema_versions integer[], p_subjects uuid[],
  p_actor_ids uuid[], p_actor_roles text[], p_occurred timestamptz[],
  p_correlations uuid[], p_causations uuid[], p_key_ids uuid[], p_hash_scheme smallint,
  p_payloads bytea[], p_secrets bytea[], p_digests bytea[]
) RETURNS TABLE (r_position bigint, r_tx text, r_recorded_at timestamptz, r_hash bytea,
                 r_duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
  n integer := coalesce(array_length(p_ids, 1), 0);
  head_version bigint;
  prev bytea;
  tx xid8 := pg_current_xact_id();
  recorded timestamptz := now();
  recorded_bytes bytea;
  tx_bytes bytea;
  positions bigint[] := '{}';
  hashes bytea[] := '{}';
  pos bigint;
  i integer;
BEGIN
  IF n = 0 THEN
    -- An expected-version assertion without events (a rule spanning streams):
    -- FOR SHARE keeps the stream from moving until this transaction ends.
    SELECT s.version INTO head_version FROM streams s WHERE s.stream_id = p_stream FOR SHARE;
    IF coalesce(head_version, 0) <> p_expected THEN
      RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, coalesce(head_version, 0), p_expected
        USING ERRCODE = 'AL409', DETAIL = coalesce(head_version, 0)::text;
    END IF;
    RETURN;
  END IF;

  IF p_expected = 0 THEN
    INSERT INTO streams (stream_id, tenant_id, version, head_hash)
      VALUES (p_stream, p_tenant, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
      ON CONFLICT (stream_id) DO NOTHING;
    IF NOT FOUND THEN
      head_version := NULL;
    ELSE
      head_version := 0;
      prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    END IF;
  ELSE
    SELECT s.version, s.head_hash INTO head_version, prev
      FROM streams s WHERE s.stream_id = p_stream FOR UPDATE;
  END IF;

  IF head_version IS DISTINCT FROM p_expected THEN
    -- A retry of an append that did commit is not a conflict: answer with it.
    IF EXISTS (SELECT 1 FROM events e WHERE e.event_id = p_ids[1]) THEN
      RETURN QUERY SELECT e.position, e.tx_id::text, e.recorded_at, e.hash, true
        FROM unnest(p_ids) WITH ORDINALITY AS x(id, ord)
        JOIN events e ON e.event_id = x.id AND e.stream_id = p_stream
        ORDER BY x.ord;
      GET DIAGNOSTICS i = ROW_COUNT;
      IF i <> n THEN
        RAISE EXCEPTION 'event ids already recorded differently (stream %)', p_stream
          USING ERRCODE = 'AL422';
      END IF;
      RETURN;
    END IF;
    SELECT s.version INTO head_version FROM streams s WHERE s.stream_id = p_stream;
    RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, coalesce(head_version, 0), p_expected
      USING ERRCODE = 'AL409', DETAIL = coalesce(head_version, 0)::text;
  END IF;

  recorded_bytes := int8send((extract(epoch FROM recorded) * 1000000)::bigint);
  tx_bytes := int8send(tx::text::bigint);
  FOR i IN 1..n LOOP
    pos := nextval('events_position_seq');
    prev := sha256(prev || p_digests[i] || int8send(pos) || tx_bytes || recorded_bytes);
    positions := positions || pos;
    hashes := hashes || prev;
  END LOOP;

  -- unnest reads each array once; subscripting big bytea[] arrays per row would copy them per row.
  INSERT INTO events (position, tx_id, event_id, stream_id, version, type, schema_version,
                      tenant_id, subject_id, actor_id, actor_role, occurred_at, recorded_at,
                      correlation_id, causation_id, key_id, hash_scheme, payload, secret,
                      digest, hash)
  SELECT u.pos, tx, u.id, p_stream, p_expected + u.k, u.typ, u.sv, p_tenant, u.subj, u.act, u.role, u.occ,
         recorded, u.corr, u.caus, u.kid, p_hash_scheme, u.pay, u.sec, u.dig, u.h
  FROM unnest(positions, p_ids, p_types, p_schema_versions, p_subjects, p_actor_ids, p_actor_roles, p_occurred,
              p_correlations, p_causations, p_key_ids, p_payloads, p_secrets, p_digests, hashes)
       WITH ORDINALITY AS u(pos, id, typ, sv, subj, act, role, occ, corr, caus, kid, pay, sec, dig, h, k);

  UPDATE streams SET version = p_expected + n, head_hash = prev WHERE stream_id = p_stream;

  RETURN QUERY SELECT positions[k], tx::text, recorded, hashes[k], false
    FROM generate_series(1, n) AS k;
END
$$;

-- Least privilege: the app inserts and reads events, never changes them.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :app_role;
GRANT SELECT, INSERT ON events TO :app_role;
GRANT SELECT, INSERT, UPDATE ON streams TO :app_role;
GRANT SELECT, INSERT, UPDATE ON data_keys TO :app_role;
GRANT USAGE ON SEQUENCE events_position_seq TO :app_role;
GRANT EXECUTE ON FUNCTION append_events TO :app_role;
