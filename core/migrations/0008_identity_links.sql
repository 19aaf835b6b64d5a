-- The global lookup from an identity provider's account to an Alliance principal: the token
-- verifier sees (iss, sub) before it knows the clinic. Hashes and ids only: the subject is
-- kept as sha256 of (iss, sub), never as itself. The truth is the clinic's identity stream
-- (identity.linked / identity.unlinked); this table is written right after those events, and
-- re-written when the same confirmation is retried.
CREATE TABLE identity_links (
  subject_hash bytea PRIMARY KEY,
  tenant_id    uuid NOT NULL,
  principal_id uuid NOT NULL,
  role         text NOT NULL,
  linked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_links_principal ON identity_links (tenant_id, principal_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON identity_links TO :app_role;
