"""A checkpoint job's statuses: a sample request's and an export's
(``tunix_samples``, ``tunix_exports``: moved by ``tasks/registry/jobs.py``,
run by ``workers/checkpoint_jobs.py``).

A job is no run: it is claimed once and never retried nor resumed, so it
has four statuses of its own.  They are spelled as four of a run's
(``tasks/lifecycle.py``) but are not those: a new run status reaches no job.

    pending ── claim ──▶ running ── finish ──▶ completed | failed
                            └── the reaper (its worker went silent) ──▶ failed
"""

import enum


class JobStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    def __str__(self):
        return self.value


#: The statuses, in their order (the API's enum of a sample's or an export's status).
JOB_STATUSES = tuple(status.value for status in JobStatus)
#: The statuses a job ends in.
JOB_FINAL = (JobStatus.COMPLETED.value, JobStatus.FAILED.value)
