"""Exports: a run's checkpoint as a standalone Hugging Face-style folder.

``merge.py`` folds a LoRA run's adapters into the base weights;
``gemma3.py`` names the merged parameters as Hugging Face's Gemma 3 does
(the inverse of tunix's ``params_safetensors`` mapping) and writes its
``config.json``; ``__main__.py`` is the program a worker runs (one
subprocess per export, as sampling); ``worker.py`` is the actor's body.
"""
