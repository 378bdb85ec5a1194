"""Exports: a run's checkpoint as a standalone Hugging Face-style folder.

``merge.py`` folds a LoRA run's adapters into the base weights;
``gemma3.py``, ``llama3.py`` and ``qwen3.py`` name the merged parameters as
Hugging Face's Gemma 3, Llama and Qwen 3 do (each the inverse of tunix's own
safetensors mapping for the family) and write its ``config.json``; ``__main__.py`` is the program a worker runs (one
subprocess per export, as sampling); ``worker.py`` is the actor's body.
"""
