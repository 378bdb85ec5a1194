"""``train()``: one training, from a parsed job to its result event."""

import math
import os
import threading
import time

from tasks.models import get_model

from . import checkpoints
from .data import ByteTokenizer, SentencePieceTokenizer, batch_indices, build_examples, learning_rate_at, \
    plan_steps, split_held_out, warmup_steps
from .errors import ConfigError, StopTraining, Terminated, WeightsNotFound
from .events import ABSENT, MAX_STEP_LOG_LINES, Eval, Progress, Result, Start, finite_or_none
from .held_out_samples import HeldOutSamples
from .model import apply_lora, build_model, configure_jax, count_lora_params, count_params, setup_jax_env, \
    weights_dir
from .spec import write_manifest


class HeldOut:
    """The held-out batches as tunix's ``eval_ds``: tunix evaluates after a
    step when ``eval_ds`` is truthy (and before the first), so this one is
    truthy only when ``due()``: at every checkpoint step and the last."""

    def __init__(self, batches, due):
        self.batches, self.due = batches, due

    def __bool__(self):
        return self.due()

    def __iter__(self):
        return iter(self.batches)


def train(job, on_event, log=print, stop=None):
    """Run the training ``job`` (a ``spec.Job``) describes; report through ``on_event``.

    ``on_event(dict)`` receives the start, progress, checkpoint and result
    events (see ``events``).  Returns the result event.  Raises InputError
    for bad input, anything else for other failures.

    ``stop`` (a ``threading.Event``; ``main`` sets it on SIGTERM) ends the
    training after the step in flight: the last step is checkpointed and
    ``Terminated`` is raised.
    """
    t0 = time.monotonic()
    stop = stop if stop is not None else threading.Event()
    spec, run = job.spec, job.run
    model_spec = get_model(spec.model_id)  # in the catalog: RunSpec checked it
    weights = weights_dir(model_spec, run.weights_dir) if model_spec.requires_weights else None
    if model_spec.tokenizer == "byte":
        tokenizer = ByteTokenizer()
    else:
        tokenizer = SentencePieceTokenizer(os.path.join(weights, model_spec.tokenizer_file))
    if tokenizer.vocab_size > model_spec.vocab_size:
        raise WeightsNotFound(f"model {model_spec.model_id!r}: tokenizer has {tokenizer.vocab_size} ids, "
                              f"the model only {model_spec.vocab_size}")
    seq_len = run.effective_max_seq_length
    if seq_len > min(spec.max_seq_length, model_spec.max_seq_length):
        raise ConfigError(f"invalid run placement: effective_max_seq_length {seq_len} is over the spec's "
                          f"max_seq_length {spec.max_seq_length} or the model's window {model_spec.max_seq_length}")
    examples, held_out = split_held_out(build_examples(run.dataset_kind, run.dataset_path, spec.seed, tokenizer,
                                                       seq_len))
    batch_seq_len = int(examples.tokens.shape[1])  # <= seq_len (JSONL: cut to the longest example)
    num_examples = len(examples.tokens)
    total_steps, per_epoch, capped = plan_steps(spec, num_examples)
    log(f"run {run.run_id or '-'}: model {model_spec.model_id}, dataset {spec.dataset_key} "
        f"({num_examples} examples, {examples.truncated} truncated, "
        f"{0 if held_out is None else len(held_out.tokens)} held out), seq_len {seq_len} (batches {batch_seq_len}), "
        f"batch {spec.batch_size}, {total_steps} steps{' (capped)' if capped else ''}")
    os.makedirs(run.run_dir, exist_ok=True)
    write_manifest(job, model_spec)

    def stop_if_asked():
        if stop.is_set():
            raise Terminated("SIGTERM before the training started; nothing trained, nothing saved")

    stop_if_asked()
    setup_jax_env(spec.device)
    platform = configure_jax(spec.device)

    import optax
    from tunix.sft import hooks as tunix_hooks
    from tunix.sft import metrics_logger as tunix_metrics
    from tunix.sft import peft_trainer
    from tunix.sft import utils as sft_utils

    stop_if_asked()
    model = build_model(model_spec, spec.seed, weights)
    param_count = trainable = count_params(model)
    if spec.lora is not None:
        model = apply_lora(model, spec.lora, model_spec, spec.seed)
        trainable = count_lora_params(model)
        log(f"LoRA rank {spec.lora.rank} alpha {spec.lora.alpha:g} on {', '.join(spec.lora.targets)}: "
            f"{trainable:,} trainable parameters of {param_count:,} ({100 * trainable / param_count:.2f}%)")
    stop_if_asked()

    warm = warmup_steps(total_steps)
    schedule = optax.join_schedules(
        [optax.linear_schedule(spec.learning_rate / (warm + 1), spec.learning_rate, warm),
         optax.constant_schedule(spec.learning_rate)], [warm]) if warm else spec.learning_rate
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.inject_hyperparams(optax.adamw)(learning_rate=schedule, weight_decay=0.0),
    )

    checkpoint_dir = checkpoints.checkpoint_dir(run.run_dir)
    training_config = peft_trainer.TrainingConfig(
        # Asked after every step; ``HeldOut`` answers when an eval is due.
        eval_every_n_steps=1,
        max_steps=total_steps,
        checkpoint_root_directory=checkpoint_dir,
        checkpointing_options=checkpoints.manager_options(spec.checkpoint_every_steps),
        pbar_description=None,
    )
    # The base's answers, before the trainer restores a checkpoint into the model.
    samples = HeldOutSamples(spec, run, model_spec, tokenizer)
    if samples:
        samples.before(model)
        stop_if_asked()
    trainer = peft_trainer.PeftTrainer(model, optimizer, training_config)
    start_step = trainer.train_steps  # > 0 when a checkpoint was restored
    restored = checkpoints.restored_record(trainer)

    pad_id = tokenizer.pad_id

    def gen_model_input(x):
        pad_mask = x.input_tokens != pad_id
        return {
            "input_tokens": x.input_tokens,
            "input_mask": x.input_mask,
            "positions": sft_utils.build_positions_from_mask(pad_mask),
            "attention_mask": sft_utils.make_causal_attn_mask(pad_mask),
        }

    trainer = trainer.with_gen_model_input_fn(gen_model_input)

    state = {"last_loss": None, "last_step": start_step, "stopping": False, "eval_loss": None, "eval_step": None}
    log_every = max(1, math.ceil(total_steps / MAX_STEP_LOG_LINES))
    train_mode = tunix_metrics.Mode.TRAIN

    class Hooks(tunix_hooks.TrainingHooks):
        def on_train_start(self, ctx):
            pass

        def on_train_end(self, ctx):
            pass

        def on_train_step_start(self, ctx):
            # Between two steps: the only place the loop can be left cleanly
            # (the model and optimizer hold exactly ``ctx.train_steps`` updates).
            if stop.is_set():
                raise StopTraining()

        def on_eval_step_start(self, ctx):
            pass

        def on_eval_step_end(self, ctx, eval_loss):
            # tunix hands the sum over the held-out batches.
            mean = finite_or_none(float(eval_loss) / len(eval_batches))
            state["eval_loss"], state["eval_step"] = mean, int(ctx.train_steps)
            on_event(Eval(step=int(ctx.train_steps), eval_loss=mean, examples=len(held_out.tokens)))
            log(f"step {int(ctx.train_steps)} eval loss {mean:.4f} ({len(held_out.tokens)} held-out examples)"
                if mean is not None else f"step {int(ctx.train_steps)} eval loss not finite")

        def on_train_step_end(self, ctx, train_step, train_loss):
            # tunix calls this one step late (it overlaps metric I/O with the
            # next step), and for the last step from trainer.close().
            loss = float(train_loss)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {train_step}")
            try:
                grad_norm = finite_or_none(ctx.metrics_logger.get_metric_history("", "grad_norm", train_mode)[-1])
            except (ValueError, IndexError, KeyError):
                grad_norm = ABSENT
            event = Progress(step=int(train_step), total_steps=total_steps, loss=loss,
                             learning_rate=learning_rate_at(spec.learning_rate, total_steps, int(train_step) - 1),
                             grad_norm=grad_norm)
            state["last_loss"], state["last_step"] = loss, int(train_step)
            on_event(event)
            if event.step % log_every == 0 or event.step == total_steps:
                log(f"step {event.step}/{total_steps} loss {loss:.4f} lr {event.learning_rate:.3g}"
                    + (f" grad_norm {grad_norm:.3f}" if grad_norm not in (None, ABSENT) else ""))

    trainer.with_training_hooks(Hooks())
    checkpoints.install_save_hook(trainer, state, checkpoint_dir, on_event)

    def batches():
        for idx in batch_indices(num_examples, spec.batch_size, spec.seed, total_steps):
            yield peft_trainer.TrainingInput(input_tokens=examples.tokens[idx], input_mask=examples.mask[idx])

    # The held-out examples in batches of the training's size (one compiled
    # shape; the last batch is filled from the first examples again).
    eval_batches = []
    if held_out is not None:
        n_eval = len(held_out.tokens)
        for start in range(0, n_eval, spec.batch_size):
            idx = [i % n_eval for i in range(start, start + spec.batch_size)]
            eval_batches.append(peft_trainer.TrainingInput(input_tokens=held_out.tokens[idx],
                                                           input_mask=held_out.mask[idx]))

    on_event(Start(total_steps=total_steps, param_count=param_count, trainable_params=trainable, device=platform,
                   model_id=model_spec.model_id, start_step=start_step, batches_per_epoch=per_epoch,
                   num_examples=num_examples, effective_max_seq_length=seq_len, batch_seq_length=batch_seq_len,
                   batch_size=spec.batch_size, steps_capped=capped))
    if start_step:
        log(f"resumed from the checkpoint of step {start_step}")
    def eval_due():
        step = int(trainer.train_steps)
        return step != start_step and (step % spec.checkpoint_every_steps == 0 or step == total_steps)

    try:
        trainer.train(batches(), eval_ds=HeldOut(eval_batches, eval_due) if eval_batches else None)
    except StopTraining:
        checkpoints.stop_and_checkpoint(trainer, state, checkpoint_dir, start_step, total_steps, on_event, log)
    final_loss, extra = state["last_loss"], {}
    if final_loss is None and int(trainer.train_steps) == start_step and restored.get("step") == start_step:
        # Nothing left to train: the checkpoint was already at the last step.
        final_loss, extra = restored.get("loss"), {"final_loss_from": "checkpoint"}
    duration_s = round(time.monotonic() - t0, 3)  # the training's: the final samples come after
    if samples:
        extra["held_out_samples"] = samples.after(trainer.model, log)
    result = Result(final_loss=final_loss, steps=int(trainer.train_steps), total_steps=total_steps,
                    duration_s=duration_s, effective_max_seq_length=seq_len,
                    batch_seq_length=batch_seq_len, param_count=param_count, trainable_params=trainable,
                    start_step=start_step, final_eval_loss=state["eval_loss"], eval_step=state["eval_step"],
                    held_out_examples=0 if held_out is None else len(held_out.tokens), **extra)
    on_event(result)
    return result
