-- Status changes send no NOTIFY any more.  PostgreSQL takes one
-- database-wide lock at commit for every transaction that issued a NOTIFY,
-- so this trigger (on the insert, the claim and the finish of every run)
-- serialised the fleet's commits: pgbench here, a 1-row INSERT at 16
-- clients 6,918 tps, with a NOTIFY 1,424.  The API's waiter now looks at the
-- runs it waits on once per tick (tasks/sql/queries.sql, watch_runs).
DROP TRIGGER IF EXISTS tunix_runs_status_changed ON tunix_runs;
DROP FUNCTION IF EXISTS tunix_runs_notify_status();
