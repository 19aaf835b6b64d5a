-- Open Server-Sent Event streams, one row each, so the cap on streams per principal holds
-- across workers (api/stream_leases.py). A row counts while its owner lives: ``owner`` is the
-- worker's liveness key (api/liveness.py), a session advisory lock PostgreSQL drops when the
-- worker's session ends, so a killed worker's rows stop counting at once and are swept by the
-- next open of the same principal. Ids only: no personal data.
CREATE TABLE stream_leases (
  id           uuid PRIMARY KEY,
  tenant_id    uuid NOT NULL,
  principal_id uuid NOT NULL,
  role         text NOT NULL,
  owner        bigint NOT NULL,
  opened_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stream_leases_principal ON stream_leases (tenant_id, principal_id, role);
GRANT SELECT, INSERT, DELETE ON stream_leases TO :app_role;
