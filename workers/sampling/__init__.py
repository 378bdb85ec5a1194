"""Samples: what a run's checkpoint (or a base model) generates.

* ``generate.py``: the core, prompts in and completions out with tunix's
  sampler; no platform imports (a training may call it too).
* ``__main__.py``: ``python -m workers.sampling JOB_JSON``, one generation in
  a fresh JAX process (like ``workers.training``), under the trainings'
  lifeline; it prints one ``@@tunix {"event": "result", ...}`` line.
* ``worker.py``: the ``tunix-samples`` actor's body in a worker: claim the
  request, fetch the checkpoint from the artifact store, run the program,
  record the outputs or the error.
"""
