"""The run registry: one small function per named query, by aggregate.

Views, middleware and the reaper call these and hold no SQL.  Each module
holds one aggregate, its queries in the ``tasks/sql`` file of the same name:

- ``runs``: the submit (``submit_run``, ``insert_runs``), every status
  change (``transition``, ``claim``: the named moves of ``tasks.lifecycle``),
  one run, the history (``list_runs``, with its counts by status), a
  run's name, tags and notes (``label_runs``, ``update_run_labels``), heartbeats, the waiter's ``watch_runs``, the
  reaper's ``lost_runs``, the bulk moves' ``matching_runs`` (and ``count_matching_others``: what
  a member's bulk move leaves to others) and admission's
  reads (``runs_to_admit``).  Its ``_count`` is the
  one place ``tunix_runs_total`` is counted (after the commit).
- ``activity``: what a run records while it trains (metrics, eval losses,
  log lines) and the reads of them (``series`` for the curves).
- ``checkpoints``: recorded checkpoints, their fencing and retention.
- ``sweeps``: sweeps and their trials.
- ``early_stopping``: a sweep's rule and the inputs of its decisions.
- ``fleet``: worker processes' heartbeats, the fleet view and the gauges.
- ``queue``: dramatiq's queue: the outbox, acks and nacks, the reaper's repairs.
- ``admin``: PostgreSQL's catalog: advisory locks, worker sessions.
- ``retention``: what retention prunes (``RETENTION_DAYS``, ``workers/reaper.py``).
- ``jobs``: sample and export requests, the checkpoint jobs: one claim,
  finish and ``fail_lost_jobs`` for both kinds; an export's reuse (in
  ``submit_export``) and its deletion.
- ``users``: users, their tokens (stored hashed) and the audit trail.
- ``cursor``: the one helper that runs a named query (``fetch_one``,
  ``fetch_all``, ``execute``...).

Every function is re-exported here, so callers write ``registry.get_run``.
"""

from .activity import get_logs, get_metrics, last_log_seq, record_activity, recorded_method_metrics, series
from .admin import held_advisory_locks, silent_worker_sessions, terminate_session
from .checkpoints import (all_checkpoint_keys, checkpoints_being_deleted, delete_checkpoint_row, get_checkpoint,
                          latest_checkpoint, list_checkpoints, mark_checkpoints_for_deletion, record_checkpoint)
from .early_stopping import median_inputs, promote, rung_inputs, sweep_rule
from .fleet import fleet, fleet_gauges, forget_dead_workers, worker_gone, worker_heartbeat
from .jobs import (JOB_KINDS, claim_export, claim_job, claim_sample, delete_export, fail_lost_jobs, finish_export,
                   finish_job, finish_sample, get_export, get_sample, list_run_exports, list_run_samples,
                   submit_export, submit_sample)
from .queue import enqueue_messages, nudge_passed_over, settle_message, unqueued_pending_runs
from .retention import (mark_pruned, prune_logs, prune_metrics, prune_queue, retention_candidates,
                        retention_store_runs)
from .runs import (claim, count_matching_others, existing_runs, get_run, get_run_by_idempotency_key, get_status,
                   heartbeat, insert_runs, label_runs, list_runs, lost_runs, matching_runs, run_owner, runs_to_admit,
                   submit_run, transition, update_run_labels, watch_runs)
from .users import (any_users, create_token, create_user, get_token, get_user, list_audit, list_tokens, list_users,
                    record_audit, revoke_token, token_user, update_user, user_waiting_runs, waiting_reason)
from .sweeps import get_sweep, insert_sweep, list_sweeps, sweep_runs, sweep_trial_ids, sweep_trials

__all__ = [
    "JOB_KINDS", "all_checkpoint_keys", "checkpoints_being_deleted", "claim", "claim_export", "claim_job",
    "claim_sample", "delete_checkpoint_row", "delete_export", "enqueue_messages", "existing_runs", "fail_lost_jobs",
    "finish_export", "finish_job", "finish_sample", "fleet", "fleet_gauges", "forget_dead_workers", "get_checkpoint",
    "get_export", "get_logs", "get_metrics", "get_run", "get_run_by_idempotency_key", "get_sample", "get_status",
    "get_sweep", "heartbeat", "held_advisory_locks", "insert_runs", "insert_sweep", "last_log_seq",
    "latest_checkpoint", "list_checkpoints", "list_run_exports", "list_run_samples", "list_runs", "list_sweeps",
    "lost_runs", "mark_checkpoints_for_deletion", "matching_runs", "median_inputs", "nudge_passed_over", "promote",
    "record_activity", "record_checkpoint", "recorded_method_metrics", "rung_inputs", "runs_to_admit", "series",
    "settle_message",
    "silent_worker_sessions", "submit_export", "submit_run", "submit_sample", "sweep_rule", "sweep_runs",
    "sweep_trial_ids", "sweep_trials", "terminate_session", "transition", "unqueued_pending_runs", "watch_runs",
    "worker_gone", "worker_heartbeat",
    "count_matching_others", "run_owner", "label_runs", "update_run_labels",
    "any_users", "create_token", "create_user", "get_token", "get_user", "list_audit", "list_tokens", "list_users",
    "record_audit", "revoke_token", "token_user", "update_user", "user_waiting_runs", "waiting_reason",
    "mark_pruned", "prune_logs", "prune_metrics", "prune_queue", "retention_candidates", "retention_store_runs",
]
