-- The reminder process (core/reminders/runner.py): where it is in the store, and which clients
-- have measures attached and when each needs deciding next. Both are derived from the store
-- (rebuildable by replaying it; the decisions themselves are events with ids derived from the
-- reminder id, so a replay decides nothing twice). Ids and times only: no address, no text.

CREATE TABLE reminder_checkpoints (
  name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,40}$'),
  checkpoint  text NOT NULL DEFAULT '0.0',
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per client with a measure attached to one of their goals. `next_at` is when the
-- process looks at the client again (the next reminder time, or now after anything that may
-- change the decision: a schedule, a consent, a discharge, a measurement, an opt-out); NULL
-- when nothing is left to remind of.
CREATE TABLE reminder_watch (
  client_id   uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL,
  goal_ids    uuid[] NOT NULL DEFAULT '{}',
  next_at     timestamptz,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reminder_watch_next ON reminder_watch (next_at) WHERE next_at IS NOT NULL;

GRANT SELECT, INSERT, UPDATE ON reminder_checkpoints, reminder_watch TO :app_role;
