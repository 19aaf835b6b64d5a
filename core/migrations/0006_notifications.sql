-- The notification dispatcher (core/notifications/dispatcher.py): where it is in the store,
-- and the work the events it has followed leave to do. Both are derived from the store
-- (rebuildable by replaying it) and written in one transaction with the checkpoint, so a
-- dispatcher that dies after a commit resumes with nothing lost. No personal data here:
-- no addresses, no message text, ids and times only.

CREATE TABLE notification_checkpoints (
  name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,40}$'),
  checkpoint  text NOT NULL DEFAULT '0.0',
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per requested notification: when its next attempt is due. `attempts` and `state`
-- only move forward (pending -> sent | given_up), so the dispatcher's own writes after an
-- attempt and the later fold of that attempt's event agree in either order.
CREATE TABLE notification_queue (
  notification_id  uuid PRIMARY KEY,
  tenant_id        uuid NOT NULL,
  due_at           timestamptz NOT NULL,
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'given_up')),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_queue_due ON notification_queue (due_at) WHERE state = 'pending';

-- Risk flags the escalation policy watches until they are acknowledged or escalated.
CREATE TABLE risk_flag_watch (
  flag_id    uuid PRIMARY KEY,
  tenant_id  uuid NOT NULL,
  client_id  uuid NOT NULL,
  raised_at  timestamptz NOT NULL,
  state      text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'escalated'))
);
CREATE INDEX risk_flag_watch_open ON risk_flag_watch (raised_at) WHERE state = 'open';

GRANT SELECT, INSERT, UPDATE ON notification_checkpoints, notification_queue, risk_flag_watch TO :app_role;
