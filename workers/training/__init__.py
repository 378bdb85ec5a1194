"""One Tunix training (SFT today), run as its own process.

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
* ``loop``: ``train()``, what every training does whatever its method.
* ``methods``: what a method supplies, as named hooks on a ``Method``: its
  data and model inputs, its loss, its metrics per step, its end-of-run
  report (``methods/__init__`` lists them and when each runs).
  ``methods/sft.py`` holds ``Sft``, the only one so far; DPO and GRPO join
  as ``methods/dpo.py`` and ``methods/grpo.py``, named in ``METHODS``.
* ``session``: ``Session``, what is known while it trains (last step and
  loss, last eval, the stop under way), shared by tunix's hooks and the
  checkpoint save hook, as attributes.
* ``checkpoints``: the save hook, the stop-and-checkpoint on SIGTERM, resume.
* ``events``: the ``@@tunix {json}`` lines on stdout (one dataclass per
  kind, ``emit`` and the one parser, ``parse_event``, that the worker
  reads them with), the error line on stderr.
* ``held_out_samples``: the held-out prompts answered before and after.
* ``errors``: what is raised on purpose, with its exit status.
* ``__main__``: the command line (also ``--param-counts``).

Events (``events`` documents their fields): ``start``, one ``progress`` per
step, ``checkpoint`` per save, ``eval`` per held-out evaluation, and ``result``.

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
