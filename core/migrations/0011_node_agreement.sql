-- Several app nodes on one database (core/shared_state.py): what every node must share with the
-- others, recorded by the first node that starts. `kek`: a fingerprint of the key-encryption key
-- (an HMAC under the key itself, so it tells nothing about the key), so a node holding another
-- KEK refuses to start even before any data key exists. `store`: a random id of this store,
-- also written as a marker file into the signing-key, anchor and erasure-ledger folders, so a
-- node pointed at folders of its own (its own ALLIANCE_HOME) refuses to start rather than sign
-- with another key, anchor elsewhere or keep its own erasure ledger. Never updated.

CREATE TABLE node_agreement (
  what         text PRIMARY KEY CHECK (what IN ('kek', 'store')),
  value        text NOT NULL,
  recorded_at  timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON node_agreement TO :app_role;
