"""The generation core (``workers/sampling/generate.py``) and the sampling
program (``python -m workers.sampling``), in-process so their own code is
traced: real tiny tunix models, tunix's sampler, an orbax checkpoint written
by tunix's own checkpoint manager."""

import json
import signal

import pytest

from tasks.models import get_model
from tasks.run_spec import RunSpec
from tasks.settings import get_settings
from workers.sampling import __main__ as program
from workers.sampling.generate import PromptTokenizer, generate
from workers.training.data import ByteTokenizer
from workers.training.model import build_model, setup_jax_env

pytestmark = pytest.mark.training

SPEC = get_model("llama3-tiny")
PREFIX = "@@tunix "


@pytest.fixture(scope="module", autouse=True)
def cpu():
    setup_jax_env("cpu")


def test_a_prompt_is_rendered_as_the_training_renders_it():
    tokenizer = ByteTokenizer()
    adapter = PromptTokenizer(tokenizer, max_prompt_tokens=6)
    # BOS prompt SEP, as encode_example writes a record's prefix
    assert adapter.encode("ab") == tokenizer.prompt_ids("ab") == [tokenizer.bos_id, 97, 98, tokenizer.sep_id]
    # A long prompt keeps BOS and its tail (which opens the answer)
    assert adapter.encode("abcdefgh") == [tokenizer.bos_id, 101, 102, 103, 104, tokenizer.sep_id]
    assert adapter.eos_id() == tokenizer.eos_id and adapter.pad_id() == 0


def test_greedy_is_the_same_text_whatever_the_seed_and_a_sampled_one_repeats_with_its_seed():
    model, tokenizer = build_model(SPEC, 3), ByteTokenizer()
    greedy = [generate(model, tokenizer, ["abc", "x"], model_spec=SPEC, max_new_tokens=10, seed=s) for s in (1, 2)]
    assert greedy[0] == greedy[1]
    assert [o["prompt"] for o in greedy[0]] == ["abc", "x"]
    assert all(o["num_tokens"] == len(o["token_ids"]) <= 10 for o in greedy[0])
    sampled = [generate(model, tokenizer, ["abc"], model_spec=SPEC, max_new_tokens=10, temperature=1.0, seed=s)
               for s in (7, 7, 8)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]


def test_generation_stops_at_the_tokenizers_end_token():
    model = build_model(SPEC, 3)
    first = generate(model, ByteTokenizer(), ["abc"], model_spec=SPEC, max_new_tokens=6)[0]
    assert first["stopped"] == "length" or first["num_tokens"] < 6

    class EndsAtFirst(ByteTokenizer):
        def end_ids(self):
            return [first["token_ids"][0]]

    # Given a tokenizer whose end token is the first token greedy decoding makes
    ended = generate(model, EndsAtFirst(), ["abc"], model_spec=SPEC, max_new_tokens=6)[0]
    # Then the completion ends there, the end token left out
    assert ended == {"prompt": "abc", "text": "", "token_ids": [], "num_tokens": 0, "stopped": "end"}


def run_program(tmp_path, capsys, job):
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(job))
    handler = signal.getsignal(signal.SIGTERM)  # the program sets its own
    try:
        code = program.main([str(path)])
    finally:
        signal.signal(signal.SIGTERM, handler)
    out, err = capsys.readouterr()
    events = [json.loads(line[len(PREFIX):]) for line in out.splitlines() if line.startswith(PREFIX)]
    return code, events, err


def test_the_program_restores_a_runs_checkpoint_over_the_model_its_training_built(tmp_path, capsys):
    from tunix.sft.checkpoint_manager import CheckpointManager

    # Given a checkpoint (model and optimizer state's model part) of a model whose weights are seed 1's,
    # saved by tunix's checkpoint manager at step 5, for a run whose spec says seed 2
    trained = build_model(SPEC, 1)
    manager = CheckpointManager(str(tmp_path / "checkpoints"))
    assert manager.save(5, trained, force=True)
    manager.close()
    spec = RunSpec.model_validate({"dataset_key": "synthetic", "model_id": SPEC.model_id, "dry_run": False,
                                   "seed": 2, "device": "cpu"}).resolved(get_settings())
    job = {"model_id": SPEC.model_id, "spec": spec, "checkpoint_dir": str(tmp_path / "checkpoints"), "step": 5,
           "prompts": ["hello"], "max_new_tokens": 8, "temperature": 0.0, "seed": 99}
    # When the program samples it
    code, events, err = run_program(tmp_path, capsys, job)
    # Then it printed one result: the checkpoint's model's text, not the seed-2 base model's
    assert code == 0, err
    (result,) = events
    expected = generate(trained, ByteTokenizer(), ["hello"], model_spec=SPEC, max_new_tokens=8)
    base = generate(build_model(SPEC, 2), ByteTokenizer(), ["hello"], model_spec=SPEC, max_new_tokens=8)
    assert result["outputs"] == expected != base
    assert result["timings"]["tokens"] == expected[0]["num_tokens"] and result["timings"]["device"] == "cpu"
    # And a step the folder does not hold is a clear failure, exit 2
    code, events, err = run_program(tmp_path, capsys, dict(job, step=6))
    assert code != 0 and events == [] and err.startswith("error: ")


def test_a_base_tiny_model_is_initialised_from_the_requests_seed(tmp_path, capsys):
    job = {"model_id": "gemma3-tiny", "spec": None, "checkpoint_dir": None, "step": None, "prompts": ["hi"],
           "max_new_tokens": 6, "temperature": 0.0, "seed": 4}
    code, events, err = run_program(tmp_path, capsys, job)
    assert code == 0, err
    spec = get_model("gemma3-tiny")
    assert events[0]["outputs"] == generate(build_model(spec, 4), ByteTokenizer(), ["hi"], model_spec=spec,
                                            max_new_tokens=6)


def test_a_bad_job_is_exit_2_with_one_error_line(tmp_path, capsys):
    code, events, err = run_program(tmp_path, capsys, {"model_id": "nope"})
    assert code == 2 and events == [] and err.strip() == "error: ConfigError: unknown model 'nope'"
