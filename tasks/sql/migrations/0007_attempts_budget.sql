-- Each run carries its own attempts budget.  ``attempts`` counts claims (it
-- is the fence a worker's writes are checked against, so it only grows);
-- ``max_attempts`` is how many of them the run may have.  It is set from
-- MAX_ATTEMPTS at the first claim, raised by one when a worker shutting down
-- hands the run back (that attempt was not the run's fault), and renewed
-- when a user resumes the run.  A claim is refused once attempts reached it,
-- so no race of recoveries can give a run one attempt more (tasks/lifecycle.py).
ALTER TABLE tunix_runs ADD COLUMN max_attempts integer;
ALTER TABLE tunix_runs ADD CONSTRAINT tunix_runs_attempts_within_budget
    CHECK (max_attempts IS NULL OR attempts <= max_attempts);
-- Never written (the counters it was meant for live in Prometheus).
ALTER TABLE tunix_runs DROP COLUMN IF EXISTS recoveries;
