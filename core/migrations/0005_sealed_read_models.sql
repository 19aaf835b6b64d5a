-- Read models are sealed with each client's data key from now on (core/projections/sealing.py).
-- Every read-model table written before holds personal text in clear, and the key that erasure
-- destroys does not reach it: drop them all, with their versions, so that nothing of them is left
-- in the database. The runner of the new code finds no active version on start and projects every
-- client again from the store (sealed), while reads of a view not yet projected answer from the
-- events, as they do for a new client. `alliance projections rebuild` is not needed (it would do
-- the same work a second time beside the runner's).
--
-- Why not a fold-version bump: a version whose code folds differently is only reported stale
-- (`projections status`) and kept serving until someone rebuilds it, so the clear text would
-- stay at rest for as long as nobody does. The change feed (client_changes, changes) holds no
-- personal data and stays: cursors handed out before the upgrade remain valid.
--
-- The migration owner owns schema `projections`, so it may drop the tables the app role created.
DO $$
DECLARE
  t text;
BEGIN
  FOR t IN SELECT table_name FROM projections.projection_versions LOOP
    EXECUTE format('DROP TABLE IF EXISTS projections.%I, projections.%I', t, t || '_items');
  END LOOP;
  DELETE FROM projections.projection_versions;
END
$$;
