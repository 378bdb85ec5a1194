"""Early stopping: the platform stops a sweep's hopeless trials.

Two rules, over the per-step training loss every worker already records
(``tunix_run_metrics``), lower being better, or, for a sweep ranked on a
method's own metric (``sweep_spec.METHOD_METRICS``: GRPO's ``reward_mean``),
over that metric, signed so that lower is better (a reward's values are
then shown negated in a stop's message):

* ``median`` (Golovin et al., "Google Vizier", 2017): at step ``s`` past
  ``min_steps``, a trial whose best loss so far is worse than the median of
  the other trials' mean loss over their first ``s`` steps stops.  Only
  trials that reached ``s`` count, and at least ``min_trials`` of them.
* ``asha`` (Li et al., "A System for Massively Parallel Hyperparameter
  Tuning", 2020), the stopping variant Ray Tune ships: rungs at
  ``min_steps * reduction_factor ** k``; a trial reaching a rung goes on
  only if its loss there is within the best ``1 / reduction_factor`` of the
  losses recorded at that rung so far, its own included.

Who decides, and why nothing is decided twice or lost: the worker holding
the trial, in the transaction that records its steps (``workers/monitor.py``),
fenced by the attempt.  A stop is the ``stop_early`` move (running →
cancel_requested, ``stop_reason`` ``early_stopped``): the worker stops the
training as it stops a cancelled one, checkpoint saved, and the run ends
``cancelled``; if the worker dies first, the reaper ends it so.  An ASHA
promotion is the trial's ``rung`` column.  Both are rows: a restart of every
process finds them, and a resumed attempt does not meet a rung again.
"""

import math
import statistics

from . import registry

#: ``stop_reason`` of a trial this module stopped.
REASON = "early_stopped"


def _quantile(values, q):
    """The ``q`` quantile of ``values``, interpolated linearly (numpy's default)."""
    values = sorted(values)
    pos = (len(values) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def median_verdict(rule, step, best_loss, peer_means):
    """Why the trial stops at ``step`` (a sentence), or None: it goes on."""
    if step < rule["min_steps"] or len(peer_means) < rule["min_trials"] or best_loss is None:
        return None
    median = statistics.median(peer_means)
    if best_loss > median:
        return (f"best loss {best_loss:.4g} by step {step} is worse than the median {median:.4g} of "
                f"{len(peer_means)} other trials' mean loss over their first {step} steps")
    return None


def rung_step(rule, k):
    return rule["min_steps"] * rule["reduction_factor"] ** k


def asha_verdict(rule, k, loss, peer_losses):
    """Why the trial stops at rung ``k`` (a sentence), or None: promoted."""
    recorded = [*peer_losses, loss]
    cutoff = _quantile(recorded, 1 / rule["reduction_factor"])
    if loss > cutoff:
        return (f"loss {loss:.4g} at rung {k} (step {rung_step(rule, k)}) is outside the best "
                f"1/{rule['reduction_factor']} of the {len(recorded)} trials there (cutoff {cutoff:.4g})")
    return None


def saved_steps(trial):
    """Steps an early-stopped trial did not train: planned minus done."""
    progress = trial.get("progress") or {}
    planned = progress.get("total_steps") or (trial.get("config") or {}).get("max_steps")
    done = progress.get("step") or trial.get("step") or 0
    return max(int(planned) - int(done), 0) if planned else 0


class Stopper:
    """The decisions for one attempt of one trial (``workers/monitor.py``
    calls ``check`` after recording its steps)."""

    def __init__(self, run, rule):
        self.run_id, self.sweep_id, self.attempt = run["id"], run["sweep_id"], run["attempts"]
        self.rule = rule
        self.rung = run.get("rung")
        self.reason = None

    def check(self, conn, step):
        """Decide at ``step`` (the latest recorded), in ``conn``'s
        transaction; True when the trial was stopped."""
        if self.reason is not None or step is None or step < self.rule["min_steps"]:
            return False
        if self.rule["rule"] == "median":
            best, peers = registry.median_inputs(conn, self.run_id, self.sweep_id, step, self.rule)
            verdict = median_verdict(self.rule, step, best, peers)
            return verdict is not None and self._stop(conn, verdict)
        k = 0 if self.rung is None else self.rung + 1
        while rung_step(self.rule, k) <= step:
            loss, peers = registry.rung_inputs(conn, self.run_id, self.sweep_id, rung_step(self.rule, k), self.rule)
            if loss is None:
                return False
            verdict = asha_verdict(self.rule, k, loss, peers)
            if verdict is not None:
                return self._stop(conn, verdict)
            registry.promote(conn, self.run_id, self.attempt, k)
            self.rung = k
            k += 1
        return False

    def _stop(self, conn, verdict):
        from .errors import InvalidTransition

        metric = self.rule.get("metric") or "loss"
        if metric != "loss":
            negated = ", negated: higher is better" if self.rule.get("mode") == "max" else ""
            verdict = f"on {metric}{negated}: " + verdict.replace("loss", "value")

        try:
            registry.transition(conn, self.run_id, "stop_early", attempt=self.attempt, stop_reason=REASON,
                                error={"type": "EarlyStopped", "message": verdict})
        except InvalidTransition:  # cancelled or ended meanwhile
            return False
        self.reason = verdict
        return True
