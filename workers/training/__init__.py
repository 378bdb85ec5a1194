"""One Tunix SFT training, run as its own process.

    python -m workers.training JOB_JSON_PATH

Every training runs in a fresh subprocess: JAX state is per process, and
tunix's ``MetricsLogger.close()`` clears every ``jax.monitoring`` listener of
the process it runs in.  The worker (``workers/runner.py``) writes the job
file and reads the output.  One concern per module:

* ``spec``: the job file, ``{"spec": <the run's stored spec>, "run": <placement>}``;
  the spec is read with the API's own ``RunSpec``, with no defaults of its
  own, and recorded in ``<run_dir>/manifest.json``.
* ``data``: tokenizers, the synthetic set, examples, batch order, the step plan.
* ``model``: weights on disk, JAX setup, the tunix model, parameter counts.
* ``loop``: ``train()``.
* ``checkpoints``: the save hook, the stop-and-checkpoint on SIGTERM, resume.
* ``events``: the ``@@tunix {json}`` lines on stdout, the error line on stderr.
* ``errors``: what is raised on purpose, with its exit status.
* ``__main__``: the command line (also ``--param-counts``).

Events (``events`` documents their fields): ``start``, one ``progress`` per
step, ``checkpoint`` per save, and ``result``.

Exit status: 0 on success; 2 for bad input (job file or spec, malformed
dataset, missing weights, GPU asked for but absent); 143 (128 + SIGTERM) when
stopped by SIGTERM (see below); 130 on Ctrl-C; 1 for any other failure.  On
failure the last line of stderr is ``error: <Type>: <message>``, and the
traceback of an unexpected error goes to ``<run_dir>/traceback.txt``.

SIGTERM (what the worker sends to cancel a run or end it at its time limit,
and what the process gets when its worker dies) stops the training after the
step in flight: the handler only sets a flag; before the next step starts the
trainer is stopped, the pending progress event of the last step is emitted,
a checkpoint of that step is saved (forced, whatever the interval) and
waited for, and then ``{"event":"checkpoint",...,"final":true,"reason":"sigterm"}``
is printed: its files are complete when the event appears.  The process exits
143 with ``error: Terminated: ...`` on stderr.  The stop costs one step plus
one save (well under a second for the tiny models; the worker allows 10 s
before SIGKILL).  A SIGTERM before the first step exits 143 at once without a
new checkpoint; one that arrives after the last step lets the run finish
normally (exit 0, result event).

Determinism: model initialisation (``nnx.Rngs(seed)``), the synthetic data and
the per-epoch shuffle all derive from the spec's ``seed``; the same spec gives
the same losses, bit for bit, on the same machine and JAX build.
"""
