"""A real model through the platform (``python -m bench training``):
gemma3-270m, full fine-tuning and LoRA rank 8, batch 4 x 128 (synthetic);
with ``--methods``, LoRA rank 8 under SFT, DPO and GRPO.

    WEIGHTS_DIR=/tmp/tunix-weights flock /tmp/tunix-realmodel.lock \\
        .venv/bin/python -m bench training [--steps 6] [--quick | --methods]

``--methods``: one trial each of SFT (synthetic, 4 x 128), DPO
(json-person-prefs, 4 pairs a step: a chosen and a rejected sequence each,
so 8 sequences through the policy and the reference) and GRPO (arithmetic,
2 prompts x 4 generations of at most 24 tokens), all LoRA rank 8: step time,
tokens/s (SFT: batch x seq; DPO: the step's sequences x their padded length;
GRPO: generated tokens), peak RSS, and for GRPO the share of the step spent
generating (the result's ``grpo_timing.sample_share``: the steps after the
first, sampling seconds over step seconds, timed inside the training).

Each training is submitted over HTTP to the API and runs on a worker
launch (1 process) on a fresh database and DATA_DIR, so its figures include
the platform: claim, weights check, job file, lifeline and subprocess, event
parsing, registry writes, the final checkpoint's upload.  Per run:

- time to first step: the run's claim (``started_at``) to the registry's
  record of step 1's progress event, as a user watching it sees it.  Trial 1
  of each kind starts with an empty JAX compilation cache
  (``$DATA_DIR/jax-cache``, ``workers/runner.training_env``); trial 2 is a
  sweep's second trial: the same shapes, another seed and learning rate.
- step time: the median interval between the progress events of steps
  2..N-1 (step N's is emitted after the final eval), from the metrics rows'
  ``recorded_at``.  NOTE: the runner writes them in batches every
  ``FLUSH_INTERVAL_S`` (0.5 s), so each time is up to 0.5 s late; the
  span of steps 1..N-1 over N-2 intervals (``mean``) divides that error by
  N-2.  tokens/s = batch x seq / step time.
- peak RSS of the training's process tree (the lifeline and the training),
  summed from /proc every 0.2 s; the worker's own is not counted.
- the checkpoint the run recorded (``tunix_checkpoints.size_bytes``, a tar
  in the artifact store) and its upload time (the result's
  ``checkpoints.upload_s``).

The baseline is ``bench/direct_loop.py``: the same model, optimizer and
``PeftTrainer`` on the same batches, in one process with none of the
platform, run right after each kind's trial 2 (its compilation cache warm,
as trial 2 had it; the machine's load as close as can be: the ``load``
column is the 1-minute load average before-after each run).  overhead =
trial 2's step time / the direct one's.

Measured here (2 shared cores): ~15 min for the default 6 steps.
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

import requests

from . import procs
from .procs import fetch, truncate

MODEL = "gemma3-270m"
BATCH, SEQ = 4, 128
#: The kinds: what each adds to the run spec; LoRA on the default targets.
KINDS = {
    "full": {},
    "lora8": {"lora": {"rank": 8}},
    "dpo-lora8": {"lora": {"rank": 8}, "method": "dpo", "dataset_key": "json-person-prefs", "learning_rate": 3e-4},
    "grpo-lora8": {"lora": {"rank": 8}, "method": "grpo", "dataset_key": "arithmetic", "batch_size": 2,
                   "learning_rate": 3e-4, "grpo": {"num_generations": 4, "max_new_tokens": 24}},
}
#: The kinds ``bench/direct_loop.py`` also runs (the overhead's baseline).
DIRECT = ("full", "lora8")
#: ``--methods``: one trial of each (their first-step times are not the point).
METHODS = ("lora8", "dpo-lora8", "grpo-lora8")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench training")
    parser.add_argument("--steps", type=int, default=6, help="steps per training (at least 4)")
    parser.add_argument("--model", default=MODEL, help="a catalog model (llama3-tiny: a smoke test of the bench)")
    parser.add_argument("--quick", action="store_true",
                        help="4 steps, LoRA only (no full fine-tuning): a few minutes")
    parser.add_argument("--methods", action="store_true",
                        help="LoRA rank 8 under SFT, DPO and GRPO, one trial each, no direct loop")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 4
    if args.steps < 4:
        parser.error("--steps must be at least 4 (steps 2..N-1 are timed)")
    args.kinds = ["lora8"] if args.quick else list(METHODS) if args.methods else list(DIRECT)
    args.trials = (1,) if args.methods else (1, 2)
    return args


def body(kind, steps, trial, model=MODEL):
    """The run spec of ``trial`` (1 or 2) of ``kind``: trial 2 differs as a sweep's trials do."""
    spec = {"dataset_key": "synthetic", "model_id": model, "dry_run": False, "device": "cpu",
            "max_steps": steps, "batch_size": BATCH, "max_seq_length": SEQ, "seed": trial,
            "learning_rate": 1e-5 * trial, "checkpoint_every_steps": 10_000, "sample_held_out": 0,
            "time_limit_s": 3600}
    spec.update(KINDS[kind])
    return spec


def step_tokens(kind, result, metrics_rows):
    """Tokens one step processes (see the module docstring), or None."""
    if kind.startswith("dpo"):
        return 2 * BATCH * (result.get("batch_seq_length") or SEQ)
    if kind.startswith("grpo"):
        lengths = [m.get("completion_length") for m in metrics_rows if m and m.get("completion_length")]
        spec = KINDS[kind]
        return statistics.mean(lengths) * spec["batch_size"] * spec["grpo"]["num_generations"] if lengths else None
    return BATCH * SEQ


def step_figures(ends):
    """(median, mean) seconds per step from the end times of steps 1..N
    (steps 2..N-1 timed: step 1 compiles, step N ends after the final eval)."""
    timed = ends[: len(ends) - 1]
    intervals = [b - a for a, b in zip(timed, timed[1:])]
    return statistics.median(intervals), (timed[-1] - timed[0]) / len(intervals)


class PeakRss:
    """Peak summed RSS (MB) of the processes whose command line holds
    ``marker``, sampled every ``interval`` s on a thread of its own."""

    def __init__(self, marker, interval=0.2):
        self.marker, self.interval, self.peak = marker.encode(), interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.sample())

    def sample(self):
        total = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self.marker not in f.read():
                        continue
                with open(f"/proc/{pid}/status") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                pass
        return total / 1024


def loadavg():
    """The machine's 1-minute load average (2 cores here: above 2, CPUs are shared)."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def _wait_final(url, run_id, timeout=3600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (status,), = fetch(url, "SELECT status FROM tunix_runs WHERE id = %s", run_id)
        if status in ("completed", "failed", "cancelled", "timeout"):
            return status
        time.sleep(0.5)
    raise RuntimeError(f"run {run_id} not finished after {timeout}s")


def platform_run(url, base, data_dir, kind, steps, trial, model=MODEL):
    """One training through the API and the worker; its figures."""
    load = loadavg()
    with PeakRss(os.path.join(data_dir, "runs")) as rss:
        r = requests.post(base + "/api/tunix/run?mode=async", json=body(kind, steps, trial, model), timeout=30)
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        status = _wait_final(url, run_id)
    (created, started, completed, result, error), = fetch(
        url, "SELECT created_at, started_at, completed_at, result, error FROM tunix_runs WHERE id = %s", run_id)
    if status != "completed":
        raise RuntimeError(f"{kind} trial {trial}: run {run_id} {status}: {json.dumps(error)[:2000]}")
    rows = fetch(url, "SELECT recorded_at, metrics FROM tunix_run_metrics WHERE run_id = %s ORDER BY step", run_id)
    ends = [t.timestamp() for t, _ in rows]
    method_metrics = [m for _, m in rows]
    first_log = fetch(url, "SELECT min(created_at) FROM tunix_run_logs WHERE run_id = %s AND stream = 'stdout'",
                      run_id)[0][0]
    sizes = fetch(url, "SELECT step, size_bytes FROM tunix_checkpoints WHERE run_id = %s ORDER BY step", run_id)
    median, mean = step_figures(ends)
    return {"kind": kind, "trial": trial, "run_id": run_id,
            "step_tokens": step_tokens(kind, result, method_metrics),
            # GRPO: the mean share of its steps (the first apart) spent sampling (workers/training/methods/grpo.py).
            "rollout_share": (result.get("grpo_timing") or {}).get("sample_share"),
            "first_step_s": ends[0] - started.timestamp(), "submit_to_first_step_s": ends[0] - created.timestamp(),
            "first_log_s": first_log.timestamp() - started.timestamp() if first_log else None,
            "step_s": median, "step_mean_s": mean, "wall_s": (completed - started).total_seconds(),
            "peak_rss_mb": rss.peak, "checkpoint_bytes": sizes[-1][1] if sizes else None,
            "upload_s": (result.get("checkpoints") or {}).get("upload_s") or [],
            "param_count": result.get("param_count"), "trainable_params": result.get("trainable_params"),
            "final_loss": result.get("final_loss"), "load": f"{load}-{loadavg()}"}


def direct_run(data_dir, kind, steps, trial, model=MODEL):
    """The same training in ``bench/direct_loop.py``, with the platform's (warm) compilation cache."""
    argv = [sys.executable, "-m", "bench.direct_loop", "--model", model, "--steps", str(steps), "--batch-size",
            str(BATCH), "--seq", str(SEQ), "--seed", str(trial), "--learning-rate", str(1e-5 * trial)]
    if KINDS[kind].get("lora"):
        argv += ["--lora-rank", str(KINDS[kind]["lora"]["rank"])]
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(data_dir, "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONPATH=procs.ROOT, DATA_DIR=data_dir)
    # A tag in its argv that only this process carries: the sampler finds it by it.
    marker = f"direct-{kind}-{time.time_ns()}"
    load = loadavg()
    with PeakRss(marker) as rss:
        started = time.time()
        out = subprocess.run([*argv, "--tag", marker], capture_output=True, text=True, cwd=procs.ROOT, env=env,
                             check=False)
    if out.returncode != 0:
        raise RuntimeError(f"direct {kind}: exit {out.returncode}: {out.stderr[-2000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    marks, ends = report["marks"], report["step_ends"]
    median, mean = step_figures(ends)
    return {"kind": kind, "trial": trial, "first_step_s": ends[0] - started, "step_s": median, "step_mean_s": mean,
            "import_s": marks["imported"] - started, "load_s": marks["loaded"] - marks["imported"],
            "compile_step1_s": ends[0] - marks["trainer"], "peak_rss_mb": max(rss.peak, report["maxrss_mb"]),
            "final_loss": report["losses"][-1], "load": f"{load}-{loadavg()}"}


def mb(n):
    return f"{n / 1e6:,.0f} MB" if n is not None else "-"


def per_second(tokens, seconds):
    return f"{tokens / seconds:.0f}" if seconds > 0 else "-"


def table(platform, direct):
    """The printed figures: one row per run, then the ratios."""
    rows = [("run", "to 1st step", "step (median/mean)", "tokens/s", "peak RSS", "checkpoint", "upload", "load")]
    for p in platform:
        rows.append((f"platform {p['kind']} trial {p['trial']}{' (cold cache)' if p['trial'] == 1 else ' (warm)'}",
                     f"{p['first_step_s']:.1f} s", f"{p['step_s']:.2f} / {p['step_mean_s']:.2f} s",
                     per_second(p.get("step_tokens") or BATCH * SEQ, p["step_s"]), f"{p['peak_rss_mb']:,.0f} MB", mb(p["checkpoint_bytes"]),
                     ", ".join(f"{s:.1f} s" for s in p["upload_s"]) or "-", p.get("load", "-")))
    for d in direct:
        rows.append((f"direct {d['kind']} (warm cache)", f"{d['first_step_s']:.1f} s",
                     f"{d['step_s']:.2f} / {d['step_mean_s']:.2f} s", per_second(BATCH * SEQ, d["step_s"]),
                     f"{d['peak_rss_mb']:,.0f} MB", "-", "-", d.get("load", "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    by = {(p["kind"], p["trial"]): p for p in platform}
    for kind in dict.fromkeys(p["kind"] for p in platform):
        cold, warm = by.get((kind, 1)), by.get((kind, 2))
        if cold and warm:
            ratio = warm["first_step_s"] / cold["first_step_s"]
            lines.append(f"{kind}: time to first step, trial 2 / trial 1 = {warm['first_step_s']:.1f} / "
                         f"{cold['first_step_s']:.1f} s = {ratio:.2f} (aim <= 0.5: {'met' if ratio <= 0.5 else 'MISSED'})")
        first = [p for p in platform if p["kind"] == kind]
        if first and first[0].get("rollout_share") is not None:
            lines.append(f"{kind}: generating (rollouts) is {100 * first[0]['rollout_share']:.0f}% of a step")
        if first and first[0]["trainable_params"]:
            lines.append(f"{kind}: {first[0]['trainable_params']:,} trainable of {first[0]['param_count']:,} "
                         f"parameters")
    for d in direct:
        same = [p for p in platform if p["kind"] == d["kind"] and p["trial"] == d["trial"]]
        if not same:
            continue
        median, mean = same[0]["step_s"], same[0]["step_mean_s"]
        if min(median, mean, d["step_s"], d["step_mean_s"]) < 0.1:
            continue  # a tiny model's steps: too short to time from 0.5 s flushes
        lines.append(f"{d['kind']}: overhead, platform trial {d['trial']} / direct step time = median {median / d['step_s']:.3f}, "
                     f"mean {mean / d['step_mean_s']:.3f} (aim <= 1.03: "
                     f"{'met' if mean / d['step_mean_s'] <= 1.03 else 'MISSED'})")
        lines.append(f"{d['kind']}: direct, warm cache: python + imports {d['import_s']:.1f} s, weights load "
                     f"{d['load_s']:.1f} s, compile + step 1 {d['compile_step1_s']:.1f} s")
    for p in platform:
        if p.get("first_log_s") is not None:
            lines.append(f"platform {p['kind']} trial {p['trial']}: claim -> first training log line (python "
                         f"up, before JAX) {p['first_log_s']:.1f} s; submit -> first step "
                         f"{p['submit_to_first_step_s']:.1f} s; claim -> completed {p['wall_s']:.1f} s")
    return "\n".join(lines)


def bench_training(url, data_dir, args):
    truncate(url)
    env = {}
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        # Trial 1 must start with an empty cache: the run's own, under DATA_DIR.
        env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(data_dir, "jax-cache")
    platform, direct = [], []
    with procs.workers(url, data_dir, processes=1, threads=1, **env), procs.api(url, data_dir) as base:
        for kind in args.kinds:
            for trial in args.trials:
                platform.append(platform_run(url, base, data_dir, kind, args.steps, trial, args.model))
                print(f"  {kind} trial {trial}: {json.dumps(platform[-1])}", flush=True)
            if len(args.trials) < 2 or kind not in DIRECT:
                continue
            # Right after trial 2, on the same (warm) cache: the machine's
            # load (shared, 2 cores) changes over minutes, and the ratio must
            # not measure that.
            direct.append(direct_run(data_dir, kind, args.steps, 2, args.model))
            print(f"  direct {kind}: {json.dumps(direct[-1])}", flush=True)
    print(f"{args.model}, {', '.join(args.kinds)}, {args.steps} steps, float32 on CPU (SFT: batch {BATCH} x {SEQ}, "
          f"synthetic):")
    print(table(platform, direct))
    # Its checkpoints are 3 GB each for full fine-tuning (12 GB a run): measured, not kept.
    shutil.rmtree(os.path.join(data_dir, "artifacts", "runs"), ignore_errors=True)
