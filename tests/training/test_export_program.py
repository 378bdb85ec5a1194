"""The export program (``python -m workers.exporting``), in-process so its own
code is traced: real tiny tunix models, orbax checkpoints written by tunix's
own checkpoint manager, the folder loaded back through tunix's own
safetensors loader of the model's family (gemma3, llama3, qwen3)."""

import json
import os
import signal

import numpy as np
import pytest

from tasks.models import get_model
from tasks.run_spec import RunSpec
from tasks.settings import get_settings
from workers.exporting import __main__ as program
from workers.exporting.merge import load_params, merged_params
from workers.training.data import ByteTokenizer
from workers.training.model import apply_lora, build_model, build_model_config, setup_jax_env

pytestmark = pytest.mark.training

SPEC = get_model("gemma3-tiny")
PREFIX = "@@tunix "
LORA = {"rank": 2, "alpha": 8.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]}


@pytest.fixture(scope="module", autouse=True)
def cpu():
    setup_jax_env("cpu")


def run_spec(seed, lora=None, model_id=SPEC.model_id):
    body = {"dataset_key": "synthetic", "model_id": model_id, "dry_run": False, "seed": seed, "device": "cpu"}
    if lora:
        body["lora"] = lora
    return RunSpec.model_validate(body).resolved(get_settings())


def trained_lora_model(spec_json, model_spec=SPEC):
    """The run's model with adapters whose B is not zero (as after training),
    so folding them in changes the weights."""
    from flax import nnx

    spec = RunSpec.stored(spec_json)
    model = apply_lora(build_model(model_spec, spec.seed), spec.lora, model_spec, spec.seed)
    rng = np.random.default_rng(0)
    state = nnx.state(model, nnx.LoRAParam)
    for _, var in nnx.to_flat_state(state):
        var.set_value(rng.normal(0, 0.05, np.shape(var.get_value())).astype(np.float32))
    nnx.update(model, state)
    return model


def losses(model, tokens, valid):
    return program.sentence_loss(model, tokens, valid)


@pytest.mark.parametrize("model_id", ["gemma3-tiny", "llama3-tiny"])
def test_folding_the_adapters_in_gives_the_adapted_models_logits(model_id):
    model_spec = get_model(model_id)
    spec = run_spec(3, LORA, model_id)
    adapted = trained_lora_model(spec, model_spec)
    tokens, valid = program.sentence_batch(ByteTokenizer())
    loss_adapted, logits_adapted = losses(adapted, tokens, valid)
    params, merged = merged_params(adapted, LORA["alpha"], LORA["rank"])
    # Every adapted projection of both layers was folded (gemma: q, kv, o einsums; both: 3 MLP kernels)
    assert len(merged) == 2 * (6 if model_id.startswith("gemma3") else 7)
    plain = load_params(build_model(model_spec, 99), params)
    loss_plain, logits_plain = losses(plain, tokens, valid)
    assert np.abs(logits_plain - logits_adapted)[valid].max() < 1e-5
    assert abs(loss_plain - loss_adapted) < 1e-6
    # And the adapters mattered: the base model alone scores otherwise
    _, logits_base = losses(build_model(model_spec, 3), tokens, valid)
    assert np.abs(logits_base - logits_adapted)[valid].max() > 1e-2


def run_program(tmp_path, capsys, job):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(job))
    handler = signal.getsignal(signal.SIGTERM)  # the program sets its own
    try:
        code = program.main([str(path)])
    finally:
        signal.signal(signal.SIGTERM, handler)
    out, err = capsys.readouterr()
    events = [json.loads(line[len(PREFIX):]) for line in out.splitlines() if line.startswith(PREFIX)]
    return code, events, err


def loaded_back(folder, model_spec=SPEC):
    """The folder through tunix's own loader of the family (not the program's table)."""
    import jax.numpy as jnp
    from tunix.models.gemma3 import params_safetensors as gemma3
    from tunix.models.llama3 import params as llama3
    from tunix.models.qwen3 import params as qwen3

    loader = {"gemma3": gemma3, "llama3": llama3, "qwen3": qwen3}[model_spec.family]
    return loader.create_model_from_safe_tensors(str(folder), build_model_config(model_spec), dtype=jnp.float32)


def test_a_lora_checkpoint_exports_merged_and_loads_back_with_its_loss(tmp_path, capsys):
    from tunix.sft.checkpoint_manager import CheckpointManager

    # Given a LoRA run's checkpoint at step 4 (adapters only, as the training saves them)
    spec = run_spec(5, LORA)
    trained = trained_lora_model(spec)
    manager = CheckpointManager(str(tmp_path / "checkpoints"))
    assert manager.save(4, trained, save_only_lora_params=True, force=True)
    manager.close()
    job = {"model_id": SPEC.model_id, "spec": spec, "run_id": "r1", "checkpoint_dir": str(tmp_path / "checkpoints"),
           "step": 4, "out_dir": str(tmp_path / "out")}
    # When the program exports it
    code, events, err = run_program(tmp_path, capsys, job)
    assert code == 0, err
    (result,) = events
    # Then the folder holds HF-named weights, a Gemma3ForCausalLM config, the byte tokenizer's note and the manifest
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == ["config.json", "model.safetensors", "tokenizer_byte.json", "tunix_export.json"]
    from safetensors.numpy import load_file

    tensors = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert tensors["model.layers.0.self_attn.q_proj.weight"].shape == (4 * 16, 64)
    assert tensors["model.layers.1.self_attn.k_proj.weight"].shape == (16, 64)
    assert tensors["model.layers.0.self_attn.o_proj.weight"].shape == (64, 4 * 16)
    assert tensors["model.layers.0.mlp.down_proj.weight"].shape == (64, 256)
    assert not any("lora" in name for name in tensors) and "lm_head.weight" not in tensors
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and config["num_key_value_heads"] == 1
    assert config["head_dim"] == 16 and config["vocab_size"] == 256 and config["tie_word_embeddings"] is True
    manifest = json.loads((tmp_path / "out" / "tunix_export.json").read_text())
    assert manifest["lora"]["merged"] is True and manifest["lora"]["merged_weights"] == 12
    assert manifest["step"] == 4 and manifest["spec"]["lora"]["rank"] == 2
    for name in ("config.json", "model.safetensors", "tokenizer_byte.json"):
        assert manifest["files"][name]["sha256"] == program.sha256_of(tmp_path / "out" / name)
    # And loaded back through tunix's own loader into a plain model, it scores the checkpoint's loss (float32)
    tokens, valid = program.sentence_batch(ByteTokenizer())
    loss_checkpoint, _ = losses(trained, tokens, valid)
    loss_export, _ = losses(loaded_back(tmp_path / "out"), tokens, valid)
    assert abs(loss_export - loss_checkpoint) < 1e-4
    assert abs(result["verification"]["loss_checkpoint"] - loss_checkpoint) < 1e-6
    assert result["verification"]["loss_diff"] < 1e-4 and result["lora_merged"] is True
    # The base model alone does not (the adapters were folded in, not dropped)
    loss_base, _ = losses(build_model(SPEC, 5), tokens, valid)
    assert abs(loss_base - loss_export) > 1e-3


def test_a_full_fine_tunes_checkpoint_exports_its_parameters_as_they_are(tmp_path, capsys):
    from tunix.sft.checkpoint_manager import CheckpointManager

    trained = build_model(SPEC, 11)  # "trained": not the seed-2 model the run starts from
    manager = CheckpointManager(str(tmp_path / "checkpoints"))
    assert manager.save(7, trained, force=True)
    manager.close()
    job = {"model_id": SPEC.model_id, "spec": run_spec(2), "run_id": "r2",
           "checkpoint_dir": str(tmp_path / "checkpoints"), "step": 7, "out_dir": str(tmp_path / "out")}
    code, events, err = run_program(tmp_path, capsys, job)
    assert code == 0, err
    assert events[0]["lora_merged"] is False and events[0]["merged_weights"] == 0
    tokens, valid = program.sentence_batch(ByteTokenizer())
    loss_trained, logits_trained = losses(trained, tokens, valid)
    loss_export, logits_export = losses(loaded_back(tmp_path / "out"), tokens, valid)
    assert abs(loss_export - loss_trained) < 1e-4 and np.abs(logits_export - logits_trained)[valid].max() < 1e-4
    assert json.loads((tmp_path / "out" / "tunix_export.json").read_text())["lora"] == {"merged": False}


@pytest.mark.parametrize("model_id, architecture", [("llama3-tiny", "LlamaForCausalLM"),
                                                     ("qwen3-tiny", "Qwen3ForCausalLM")])
def test_llama3_and_qwen3_lora_checkpoints_export_merged_and_load_back_with_their_loss(
        tmp_path, capsys, model_id, architecture):
    from safetensors.numpy import load_file
    from tunix.sft.checkpoint_manager import CheckpointManager

    # Given a LoRA run's checkpoint of an untied-embedding model (adapters only, as the training saves them)
    model_spec = get_model(model_id)
    assert model_spec.tied_embeddings is False
    spec = run_spec(6, LORA, model_id)
    trained = trained_lora_model(spec, model_spec)
    manager = CheckpointManager(str(tmp_path / "checkpoints"))
    assert manager.save(3, trained, save_only_lora_params=True, force=True)
    manager.close()
    job = {"model_id": model_id, "spec": spec, "run_id": "r3", "checkpoint_dir": str(tmp_path / "checkpoints"),
           "step": 3, "out_dir": str(tmp_path / "out")}
    # When the program exports it
    code, events, err = run_program(tmp_path, capsys, job)
    assert code == 0, err
    (result,) = events
    # Then the weights carry Hugging Face's names and shapes, an lm_head of their own (untied), no adapters
    tensors = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert tensors["model.layers.0.self_attn.q_proj.weight"].shape == (4 * 16, 64)
    assert tensors["model.layers.1.self_attn.v_proj.weight"].shape == (2 * 16, 64)
    assert tensors["model.layers.0.self_attn.o_proj.weight"].shape == (64, 4 * 16)
    assert tensors["model.layers.0.mlp.down_proj.weight"].shape == (64, 256)
    assert tensors["lm_head.weight"].shape == (256, 64) and not any("lora" in name for name in tensors)
    assert ("model.layers.0.self_attn.q_norm.weight" in tensors) == (model_id == "qwen3-tiny")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == [architecture] and config["tie_word_embeddings"] is False
    assert config["num_key_value_heads"] == 2 and config["head_dim"] == 16 and config["vocab_size"] == 256
    assert config["rms_norm_eps"] == model_spec.norm_eps
    manifest = json.loads((tmp_path / "out" / "tunix_export.json").read_text())
    assert manifest["family"] == model_spec.family and manifest["lora"]["merged_weights"] == 14
    assert architecture in manifest["layout"]
    # And loaded back through tunix's own loader it is the merged model exactly (the inverse is exact),
    # so it scores the checkpoint's loss; the base model alone does not
    expected, _ = merged_params(trained, LORA["alpha"], LORA["rank"])
    reloaded = loaded_back(tmp_path / "out", model_spec)
    back, _ = merged_params(reloaded, 0, 0)
    assert set(back) == set(expected) and all(np.array_equal(back[k], expected[k]) for k in expected)
    tokens, valid = program.sentence_batch(ByteTokenizer())
    loss_checkpoint, _ = losses(trained, tokens, valid)
    loss_export, _ = losses(reloaded, tokens, valid)
    assert abs(loss_export - loss_checkpoint) < 1e-4 and result["verification"]["loss_diff"] < 1e-4
    loss_base, _ = losses(build_model(model_spec, 6), tokens, valid)
    assert abs(loss_base - loss_export) > 1e-3


def test_every_catalog_family_has_an_exporter_the_api_and_the_program_agree_on():
    from tasks.export_spec import EXPORT_FAMILIES
    from tasks.models import MODELS

    assert tuple(program.EXPORTERS) == EXPORT_FAMILIES
    assert {spec.family for spec in MODELS.values()} <= set(EXPORT_FAMILIES)


def test_a_model_family_without_an_exporter_is_exit_2(tmp_path, capsys, monkeypatch):
    # Every catalog family has an exporter now: a table without llama3 stands for a family added without one
    monkeypatch.setattr(program, "EXPORTERS", {f: m for f, m in program.EXPORTERS.items() if f != "llama3"})
    job = {"model_id": "llama3-tiny", "spec": run_spec(1, model_id="llama3-tiny"), "checkpoint_dir": None,
           "step": 1, "out_dir": str(tmp_path / "out")}
    code, events, err = run_program(tmp_path, capsys, job)
    assert code == 2 and events == []
    assert err.strip() == ("error: ExportUnsupported: model 'llama3-tiny' (family llama3): "
                           "export supports gemma3, qwen3 models")
    assert not (tmp_path / "out").exists()
