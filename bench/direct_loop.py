"""The same Tunix loop as a platform training, run directly: the baseline of
``python -m bench training``'s overhead ratio.

    python -m bench.direct_loop --model gemma3-270m --steps 6 --batch-size 4 --seq 128 [--lora-rank 8]

It builds what ``workers/training/loop.py`` builds (the catalog model, its
weights, qwix LoRA on the default targets when asked, the same optax chain
and ``PeftTrainer`` on the same synthetic batches) and trains ``--steps``
steps in this process, with none of the platform: no job file, no worker,
no lifeline, no event lines, no eval, no checkpoint.  Each step's end is
timed where the platform's progress event is emitted (tunix's
``on_train_step_end``, which tunix calls one step late), so both sides time
the same thing.

It prints one JSON line: wall-clock marks (``time.time()``: ``started``,
``imported`` = JAX, tunix and optax imported, ``loaded`` = weights in the
model (and LoRA applied), ``trainer`` = ``PeftTrainer`` built), ``step_ends``
(one per step, 1-based order) and ``maxrss_mb`` (``ru_maxrss``).
"""

import argparse
import json
import resource
import sys
import time


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.direct_loop")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--lora-rank", type=int, default=None, help="train LoRA adapters of this rank only")
    parser.add_argument("--tag", default=None, help="ignored: names this process for a sampler of /proc")
    parser.add_argument("--weights-dir", default=None, help="the model's weights folder ($WEIGHTS_DIR/<model> else)")
    return parser.parse_args(argv)


def run(args):
    marks = {"started": time.time()}
    from tasks.models import get_model
    from tasks.run_spec import LoraSpec
    from workers.training.data import ByteTokenizer, SentencePieceTokenizer, batch_indices, build_examples, split_held_out, \
        warmup_steps
    from workers.training.model import apply_lora, build_model, commit_to_device, configure_jax, setup_jax_env, \
        weights_dir

    setup_jax_env("cpu")
    configure_jax("cpu")
    import optax
    from tunix.sft import hooks as tunix_hooks
    from tunix.sft import peft_trainer
    from tunix.sft import utils as sft_utils

    marks["imported"] = time.time()
    spec = get_model(args.model)
    weights = weights_dir(spec, args.weights_dir) if spec.requires_weights else None
    tokenizer = ByteTokenizer() if spec.tokenizer == "byte" else \
        SentencePieceTokenizer(f"{weights}/{spec.tokenizer_file}")
    examples, _ = split_held_out(build_examples("synthetic", None, args.seed, tokenizer, args.seq))
    model = build_model(spec, args.seed, weights)
    if args.lora_rank:
        model = apply_lora(model, LoraSpec(rank=args.lora_rank), spec, args.seed)
    marks["loaded"] = time.time()

    warm = warmup_steps(args.steps)
    lr = args.learning_rate
    schedule = optax.join_schedules([optax.linear_schedule(lr / (warm + 1), lr, warm), optax.constant_schedule(lr)],
                                    [warm]) if warm else lr
    optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                            optax.inject_hyperparams(optax.adamw)(learning_rate=schedule, weight_decay=0.0))
    config = peft_trainer.TrainingConfig(eval_every_n_steps=10 ** 9, max_steps=args.steps, pbar_description=None)
    trainer = peft_trainer.PeftTrainer(model, optimizer, config)
    commit_to_device(trainer)
    pad_id = tokenizer.pad_id

    def gen_model_input(x):
        pad_mask = x.input_tokens != pad_id
        return {"input_tokens": x.input_tokens, "input_mask": x.input_mask,
                "positions": sft_utils.build_positions_from_mask(pad_mask),
                "attention_mask": sft_utils.make_causal_attn_mask(pad_mask)}

    step_ends, losses = [], []

    class Hooks(tunix_hooks.TrainingHooks):
        def on_train_start(self, ctx):
            pass

        def on_train_end(self, ctx):
            pass

        def on_train_step_start(self, ctx):
            pass

        def on_eval_step_start(self, ctx):
            pass

        def on_eval_step_end(self, ctx, eval_loss):
            pass

        def on_train_step_end(self, ctx, train_step, train_loss):
            losses.append(float(train_loss))  # waits for the step, as the platform's hook does
            step_ends.append(time.time())

    trainer = trainer.with_gen_model_input_fn(gen_model_input)
    trainer.with_training_hooks(Hooks())
    marks["trainer"] = time.time()

    def batches():
        for idx in batch_indices(len(examples.tokens), args.batch_size, args.seed, args.steps):
            yield peft_trainer.TrainingInput(input_tokens=examples.tokens[idx], input_mask=examples.mask[idx])

    trainer.train(batches())  # closes the trainer: its last step's hook runs there
    marks["ended"] = time.time()
    return {"marks": marks, "step_ends": step_ends, "losses": losses,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
