"""A greedy sample of the real Gemma 3 270M base model, through the API and a
worker: no run needed, the same text twice.

Slow and heavy (the model's ~1 GB of float32 weights loaded in each
generation's process; without ``WEIGHTS_DIR`` the packaged GGUF is converted
first, ~40 s, 3 GB): run it alone, under ``flock /tmp/tunix-realmodel.lock``
on a shared machine.  Measured here (2 cores, WEIGHTS_DIR set): 16 tokens in
~23 s a request (7.4 s loading, 14.4 s generating, most of it XLA's compile).
"""

import pytest

from support import ApiClient, start_api, wait_for

pytestmark = [pytest.mark.training, pytest.mark.slow]


def test_a_greedy_base_gemma3_270m_sample_is_text_and_repeats(databases, worker_launch, log_dir, data_dir):
    # Given an API and one worker launch that samples (WEIGHTS_DIR as the environment has it)
    url = databases.create()
    api_proc = start_api(url, data_dir, log_dir)
    worker_launch(url=url, workers=1, threads=2, WORKER_QUEUES="tunix-samples", JAX_PLATFORMS="cpu")
    api = ApiClient(api_proc.url)
    try:
        # When "The capital of France is" is sampled greedily twice from the base model
        done = []
        for _ in range(2):
            response = api.http.post(api.url("/api/tunix/models/gemma3-270m/samples"), timeout=30,
                                     json={"prompts": ["The capital of France is"], "max_new_tokens": 16})
            assert response.status_code == 202, response.text
            sample_id = response.json()["sample_id"]
            done.append(wait_for(lambda: (lambda s: s if s["status"] in ("completed", "failed") else None)(
                api.get(f"/api/tunix/samples/{sample_id}").json()), 900, interval=0.5, message="sample final"))
        # Then both completed with 16 tokens of text, token for token the same
        assert [d["status"] for d in done] == ["completed", "completed"], [d["error"] for d in done]
        first, second = (d["outputs"][0] for d in done)
        assert first["text"].strip() and first["token_ids"] == second["token_ids"]
        print(f"\ngemma3-270m greedy: {first['text']!r}; timings {done[0]['timings']}")
    finally:
        api_proc.stop()
