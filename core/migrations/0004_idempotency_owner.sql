-- Who runs an in-progress Idempotency-Key claim: the owner's liveness key, a bigint on
-- which that worker holds a session advisory lock for as long as it lives (api/liveness.py).
-- A retry that finds the lock released (pg_locks) takes the claim over; a claim is never
-- judged by its age. Rows from before this column (owner NULL) count as abandoned.
-- The app role already may UPDATE the table, and pg_locks is readable by every role.
ALTER TABLE idempotency_keys ADD COLUMN owner bigint;
