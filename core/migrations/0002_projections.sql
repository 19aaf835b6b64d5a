-- Projections: read models, their checkpoints, and the per-client change feed.
-- :app_role is replaced by the quoted app role name when the migration runs.
--
-- Everything lives in the schema `projections`, owned by the migration owner.
-- The app role gets USAGE and CREATE on it because a rebuild creates the next
-- version of a read-model table (`projections.<name>_v<N>`) at run time, beside
-- the live one, and drops the old one after the switch: those tables are owned
-- by the app role (it creates them), and the app role can create nothing
-- outside this schema (0001 revoked CREATE on `public`). The bookkeeping tables
-- below are the owner's; the app role only reads and writes their rows.

CREATE SCHEMA projections;
GRANT USAGE, CREATE ON SCHEMA projections TO :app_role;

-- One row per (projection, version). `state`: building (a rebuild fills it;
-- readers do not see it), active (the one readers see; at most one per name),
-- retired (switched away from; its table is being dropped). The checkpoint is
-- written in the same transaction as the rows it covers.
CREATE TABLE projections.projection_versions (
  name             text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,40}$'),
  -- The generation: a rebuild writes generation N+1 beside N.
  version          integer NOT NULL CHECK (version >= 1),
  -- The code's fold version that built it (a mismatch means: rebuild).
  fold_version     integer NOT NULL,
  state            text NOT NULL CHECK (state IN ('building', 'active', 'retired')),
  table_name       text NOT NULL,
  checkpoint       text NOT NULL DEFAULT '0.0',
  events_applied   bigint NOT NULL DEFAULT 0,
  last_recorded_at timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  activated_at     timestamptz,
  PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX projection_versions_one_active ON projections.projection_versions (name)
  WHERE state = 'active';

-- The change feed. `client_changes` holds one counter per client; a projection
-- transaction that changes a client's view bumps it (the row lock serialises
-- the projections touching that client, so per-client seq is gap-free and in
-- commit order) and records (client, seq, kind) in `changes`. No personal data
-- here, by design: the view is read when the change is delivered, so erasure
-- has nothing to scrub in the feed.
CREATE TABLE projections.client_changes (
  client_id  uuid PRIMARY KEY,
  tenant_id  uuid NOT NULL,
  seq        bigint NOT NULL CHECK (seq >= 1)
);

CREATE TABLE projections.changes (
  client_id  uuid NOT NULL,
  seq        bigint NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('plan', 'progress', 'history')),
  changed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (client_id, seq)
);

-- One round trip for a read: the active version's document of one client.
-- Dynamic SQL so readers never cache a table name across a switch.
CREATE FUNCTION projections.active_document(p_name text, p_client uuid, p_tenant uuid)
RETURNS TABLE (doc bytea, version integer, checkpoint text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  t text;
  v integer;
BEGIN
  SELECT pv.table_name, pv.version INTO t, v FROM projections.projection_versions pv
    WHERE pv.name = p_name AND pv.state = 'active';
  IF t IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT d.doc, $3, d.cp_tx::text || ''.'' || d.cp_pos::text FROM projections.%I d '
    'WHERE d.client_id = $1 AND ($2::uuid IS NULL OR d.tenant_id = $2)', t)
    USING p_client, p_tenant, v;
END
$$;

-- One round trip for a read of a document stored as a head plus item rows (see
-- core/projections/parts.py): the head row as part -1, then the client's items in
-- (part, ord) order; nothing when the client has no head row in the active version
-- (or not in this tenant).
CREATE FUNCTION projections.active_parts(p_name text, p_client uuid, p_tenant uuid)
RETURNS TABLE (part smallint, ord bigint, data bytea)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  t text;
BEGIN
  SELECT pv.table_name INTO t FROM projections.projection_versions pv
    WHERE pv.name = p_name AND pv.state = 'active';
  IF t IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT (-1)::smallint, 0::bigint, d.doc FROM projections.%I d '
    'WHERE d.client_id = $1 AND ($2::uuid IS NULL OR d.tenant_id = $2)', t)
    USING p_client, p_tenant;
  IF FOUND AND to_regclass(format('projections.%I', t || '_items')) IS NOT NULL THEN
    RETURN QUERY EXECUTE format(
      'SELECT i.part, i.ord, i.data FROM projections.%I i WHERE i.client_id = $1 ORDER BY i.part, i.ord',
      t || '_items')
      USING p_client;
  END IF;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON projections.projection_versions TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON projections.client_changes TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON projections.changes TO :app_role;
GRANT EXECUTE ON FUNCTION projections.active_document(text, uuid, uuid) TO :app_role;
GRANT EXECUTE ON FUNCTION projections.active_parts(text, uuid, uuid) TO :app_role;
