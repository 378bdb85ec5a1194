"""``train()``: one training, from a parsed job to its result event.

What every training does, whatever its method: the weights and tokenizer,
the step plan, the manifest, JAX, the model (and its LoRA adapters), the
optimizer, tunix's checkpointing, the start and result events, the SIGTERM
stop.  What differs by method (its data and model inputs, its loss, its
metrics per step, its end-of-run report) is a ``methods.Method``'s hooks;
what is known while it trains is the ``session.Session``.
"""

import os
import threading
import time

from tasks.models import get_model

from . import checkpoints
from .data import ByteTokenizer, SentencePieceTokenizer, plan_steps, warmup_steps
from .errors import ConfigError, StopTraining, Terminated, WeightsNotFound
from .events import Result, Start
from .methods import method_for
from .model import apply_lora, build_model, commit_to_device, configure_jax, count_lora_params, count_params, \
    setup_jax_env, weights_dir
from .session import Session, tunix_hooks
from .spec import write_manifest


def train(job, on_event, log=print, stop=None):
    """Run the training ``job`` (a ``spec.Job``) describes; report through ``on_event``.

    ``on_event(event)`` receives the start, progress, eval, checkpoint and
    result events (typed: see ``events``).  Returns the ``Result`` event.
    Raises InputError for bad input, anything else for other failures.

    ``stop`` (a ``threading.Event``; ``main`` sets it on SIGTERM) ends the
    training after the step in flight: the last step is checkpointed and
    ``Terminated`` is raised.
    """
    t0 = time.monotonic()
    stop = stop if stop is not None else threading.Event()
    spec, run = job.spec, job.run
    model_spec = get_model(spec.model_id)  # in the catalog: RunSpec checked it
    weights = weights_dir(model_spec, run.weights_dir) if model_spec.requires_weights else None
    tokenizer = _tokenizer(model_spec, weights)
    seq_len = run.effective_max_seq_length
    if seq_len > min(spec.max_seq_length, model_spec.max_seq_length):
        raise ConfigError(f"invalid run placement: effective_max_seq_length {seq_len} is over the spec's "
                          f"max_seq_length {spec.max_seq_length} or the model's window {model_spec.max_seq_length}")
    method = method_for(spec)(job, model_spec, tokenizer)
    method.load(seq_len)
    total_steps, per_epoch, capped = plan_steps(spec, method.num_examples)
    log(f"run {run.run_id or '-'}: model {model_spec.model_id}, dataset {spec.dataset_key} "
        f"({method.describe_data()}), seq_len {seq_len} (batches {method.batch_seq_length}), "
        f"batch {spec.batch_size}, {total_steps} steps{' (capped)' if capped else ''}")
    os.makedirs(run.run_dir, exist_ok=True)
    write_manifest(job, model_spec)

    def stop_if_asked():
        if stop.is_set():
            raise Terminated("SIGTERM before the training started; nothing trained, nothing saved")

    stop_if_asked()
    setup_jax_env(spec.device)
    platform = configure_jax(spec.device)

    from tunix.sft import peft_trainer

    stop_if_asked()
    model = build_model(model_spec, spec.seed, weights)
    param_count = trainable = count_params(model)
    # LoRA: the frozen base shares its arrays with the adapted model (qwix
    # clones the graph, not the weights), so it is a reference for free.
    method.frozen_base = model if spec.lora is not None else None
    if spec.lora is not None:
        model = apply_lora(model, spec.lora, model_spec, spec.seed)
        trainable = count_lora_params(model)
        log(f"LoRA rank {spec.lora.rank} alpha {spec.lora.alpha:g} on {', '.join(spec.lora.targets)}: "
            f"{trainable:,} trainable parameters of {param_count:,} ({100 * trainable / param_count:.2f}%)")
    stop_if_asked()

    checkpoint_dir = checkpoints.checkpoint_dir(run.run_dir)
    training_config = peft_trainer.TrainingConfig(
        # Asked after every step; ``session.HeldOut`` answers when an eval is due.
        eval_every_n_steps=1,
        max_steps=total_steps,
        checkpoint_root_directory=checkpoint_dir,
        checkpointing_options=checkpoints.manager_options(spec.checkpoint_every_steps),
        pbar_description=None,
    )
    if method.before_trainer(model):
        stop_if_asked()
    trainer = method.build_trainer(model, _optimizer(spec, total_steps), training_config)
    commit_to_device(trainer)
    start_step = trainer.train_steps  # > 0 when a checkpoint was restored
    restored = checkpoints.restored_record(trainer)

    session = Session(method, trainer, total_steps=total_steps, start_step=start_step,
                      checkpoint_every=spec.checkpoint_every_steps, checkpoint_dir=checkpoint_dir,
                      on_event=on_event, log=log, stop=stop)
    trainer.with_training_hooks(tunix_hooks(session))
    checkpoints.install_save_hook(trainer, session)

    on_event(Start(total_steps=total_steps, param_count=param_count, trainable_params=trainable, device=platform,
                   model_id=model_spec.model_id, start_step=start_step, batches_per_epoch=per_epoch,
                   num_examples=method.num_examples, effective_max_seq_length=seq_len,
                   batch_seq_length=method.batch_seq_length, batch_size=spec.batch_size, steps_capped=capped))
    if start_step:
        log(f"resumed from the checkpoint of step {start_step}")
    try:
        trainer.train(method.batches(total_steps), eval_ds=session.eval_ds())
    except StopTraining:
        checkpoints.stop_and_checkpoint(trainer, session)
    final_loss, extra = session.last_loss, {}
    if final_loss is None and int(trainer.train_steps) == start_step and restored.get("step") == start_step:
        # Nothing left to train: the checkpoint was already at the last step.
        final_loss, extra = restored.get("loss"), {"final_loss_from": "checkpoint"}
    # The training's duration: the method's report (held-out samples) comes after it.
    duration_s = round(time.monotonic() - t0, 3)
    extra.update(method.report(trainer.model, log))
    result = Result(final_loss=final_loss, steps=int(trainer.train_steps), total_steps=total_steps,
                    duration_s=duration_s, effective_max_seq_length=seq_len,
                    batch_seq_length=method.batch_seq_length, param_count=param_count, trainable_params=trainable,
                    start_step=start_step, final_eval_loss=session.eval_loss, eval_step=session.eval_step,
                    held_out_examples=method.held_out_examples, **extra)
    on_event(result)
    return result


def _tokenizer(model_spec, weights):
    if model_spec.tokenizer == "byte":
        tokenizer = ByteTokenizer()
    else:
        tokenizer = SentencePieceTokenizer(os.path.join(weights, model_spec.tokenizer_file))
    if tokenizer.vocab_size > model_spec.vocab_size:
        raise WeightsNotFound(f"model {model_spec.model_id!r}: tokenizer has {tokenizer.vocab_size} ids, "
                              f"the model only {model_spec.vocab_size}")
    return tokenizer


def _optimizer(spec, total_steps):
    """AdamW (no weight decay) after clipping the global norm to 1.0; the
    learning rate warms up linearly (``data.warmup_steps``), then stays."""
    import optax

    warm = warmup_steps(total_steps)
    schedule = optax.join_schedules(
        [optax.linear_schedule(spec.learning_rate / (warm + 1), spec.learning_rate, warm),
         optax.constant_schedule(spec.learning_rate)], [warm]) if warm else spec.learning_rate
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.inject_hyperparams(optax.adamw)(learning_rate=schedule, weight_decay=0.0),
    )
