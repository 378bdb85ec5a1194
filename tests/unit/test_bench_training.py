"""``python -m bench training`` (bench/training.py), without the real model:
its flags, the run specs it submits, how it reads step times, its memory
sampler and its table."""

import subprocess
import sys
import time
import uuid

import pytest

from bench import __main__ as bench_main
from bench import training
from tasks.run_spec import RunSpec


def test_the_defaults_time_full_and_lora_for_6_steps():
    args = training.parse_args([])
    assert (args.steps, args.kinds, args.model) == (6, ["full", "lora8"], "gemma3-270m")


def test_quick_is_4_steps_of_lora_only():
    args = training.parse_args(["--quick"])
    assert (args.steps, args.kinds) == (4, ["lora8"])


def test_fewer_than_4_steps_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        training.parse_args(["--steps", "3"])
    assert exc.value.code == 2
    assert "at least 4" in capsys.readouterr().err


def test_an_unknown_bench_or_a_bad_flag_stops_before_any_process_starts(capsys):
    # Given no database is reachable, both answers come before one is needed.
    assert bench_main.main(["trainng"]) == 2
    assert "unknown bench(es): trainng" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_main.main(["training", "--steps", "x"])


def test_the_submitted_specs_are_valid_runs_of_batch_4_by_128_and_trial_2_differs_as_a_sweeps_trial():
    for kind in training.DIRECT:
        one, two = (RunSpec.model_validate(training.body(kind, 6, trial)) for trial in (1, 2))
        assert (one.batch_size, one.max_seq_length, one.max_steps, one.dry_run) == (4, 128, 6, False)
        assert (one.lora is None) == (kind == "full")
        assert one.seed != two.seed and one.learning_rate != two.learning_rate
        assert one.model_dump(exclude={"seed", "learning_rate"}) == two.model_dump(exclude={"seed", "learning_rate"})
    assert RunSpec.model_validate(training.body("lora8", 6, 1)).lora.rank == 8


def test_methods_runs_one_trial_each_of_sft_dpo_and_grpo_with_lora_on_their_shipped_sets():
    args = training.parse_args(["--methods"])
    assert (args.kinds, args.trials, args.steps) == (["lora8", "dpo-lora8", "grpo-lora8"], (1,), 6)
    specs = {kind: RunSpec.model_validate(training.body(kind, 6, 1)) for kind in args.kinds}
    assert [(s.method, s.dataset_key, s.lora.rank) for s in specs.values()] == [
        ("sft", "synthetic", 8), ("dpo", "json-person-prefs", 8), ("grpo", "arithmetic", 8)]
    # GRPO's tokens a step are what it generates: prompts x generations x the mean completion length
    assert training.step_tokens("grpo-lora8", {}, [{"completion_length": 10}, None, {"completion_length": 20}]) == \
        15 * 2 * 4


def test_step_time_leaves_out_step_1_and_the_last_step():
    # Given step ends: step 1 after compiling, steps of 2 s, the last after a 30 s eval.
    ends = [100.0, 102.0, 104.0, 106.5, 108.5, 138.5]
    median, mean = training.step_figures(ends)
    assert median == 2.0
    assert mean == pytest.approx(8.5 / 4)


def test_the_rss_sampler_sums_the_processes_that_carry_its_marker():
    marker = f"bench-rss-{uuid.uuid4().hex}"
    # Two processes holding about 50 MB each, named by the marker.
    code = f"b = bytearray(50 * 2**20); import time; time.sleep(30)  # {marker}"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    try:
        sampler = training.PeakRss(marker)
        for _ in range(100):
            total = sampler.sample()
            if total > 100:
                break
            time.sleep(0.05)
        assert 100 < total < 400
        assert training.PeakRss(f"bench-rss-{uuid.uuid4().hex}").sample() == 0
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _platform(kind, trial, first, step, trainable=1000):
    return {"kind": kind, "trial": trial, "first_step_s": first, "submit_to_first_step_s": first + 0.1,
            "first_log_s": 0.5, "step_s": step, "step_mean_s": step, "wall_s": 100.0, "peak_rss_mb": 11_500.0,
            "checkpoint_bytes": 3_200_000_000, "upload_s": [4.2], "param_count": 268_098_176,
            "trainable_params": trainable}


def test_the_table_has_a_row_per_run_and_the_ratios_against_their_aims():
    platform = [_platform("full", 1, 100.0, 9.5), _platform("full", 2, 40.0, 9.7)]
    direct = [{"kind": "full", "trial": 2, "first_step_s": 35.0, "step_s": 9.5, "step_mean_s": 9.5,
               "import_s": 6.0, "load_s": 10.0, "compile_step1_s": 19.0, "peak_rss_mb": 11_000.0}]
    text = training.table(platform, direct)
    assert "platform full trial 1 (cold cache)" in text and "direct full (warm cache)" in text
    assert "3,200 MB" in text and "4.2 s" in text and "11,500 MB" in text
    assert f"{4 * 128 / 9.5:.0f}" in text  # tokens/s
    assert "trial 2 / trial 1 = 40.0 / 100.0 s = 0.40 (aim <= 0.5: met)" in text
    assert "trial 2 / direct step time = median 1.021, mean 1.021 (aim <= 1.03: met)" in text
    assert "weights load 10.0 s" in text
