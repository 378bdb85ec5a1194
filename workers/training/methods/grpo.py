"""``Grpo``: group relative policy optimisation (Shao et al. 2024) with
tunix's ``GRPOLearner`` on ``{prompt, answer}`` records.

Each step takes ``batch_size`` prompts (the seed's order, ``data.batch_indices``;
every 10th record held out), has the policy answer each ``num_generations``
times (tunix's vanilla rollout: its KV-cache ``Sampler``, at
``temperature``), scores every answer with the run's reward
(``tasks/rewards.weighted_sum`` of ``grpo.reward``), and takes one
optimizer step on tunix's GRPO loss: the answers' advantages (reward minus
the group's mean, over its standard deviation) through the clipped ratio,
plus ``beta`` times the KL to the reference (with LoRA the frozen base,
``Method.frozen_base``, which shares the adapted model's arrays; for a full
fine-tuning a copy taken before any restore, ``nnx.clone``; none at beta 0).

How it sits in the platform's loop: ``build_trainer`` builds tunix's
``RLCluster`` (actor, rollout and reference on one device, the rollout
sharing the actor's weights) and a ``GRPOLearner``, and returns
``GrpoTrainer``: the cluster's actor trainer (a ``PeftTrainer`` subclass:
the loop's hooks, checkpoint manager, restore and ``close`` are its own)
whose ``train`` runs the learner.  What had to be adapted, read in tunix
0.1.7's ``rl_cluster.py`` / ``rl_learner.py``:

* checkpoints: ``RLCluster`` puts the actor's under ``<root>/actor``; the
  platform keeps a run's at ``<run_dir>/checkpoints/<step>`` (the worker
  uploads them from there, sampling and export restore them from there), so
  the cluster gets no checkpoint folder and the actor trainer gets the
  platform's manager and restores from it, as ``PeftTrainer.__init__`` does
  (before the learner reads the restored step: it fast-forwards the data
  past the steps already trained);
* memory: ``RLCluster`` keeps a copy of the whole actor state in host
  memory (``_anchor_policy_state``, for an off-policy path GRPO with one
  iteration never takes); it is dropped once the cluster is built, so a LoRA
  run holds one copy of the base weights (1.07 GB for Gemma 3 270M);
* determinism: the rollout's seed is fixed in its config; the sampling of
  step S is seeded from ``(spec.seed, S)`` (``step_seed``), so a run
  killed and resumed from a checkpoint samples what the uninterrupted run
  sampled: the same answers, rewards and losses;
* the end of an answer: the sampler's tokens stop before the end token, so
  tunix's loss never sees it and a policy could never learn to stop; the
  rollout here appends the turn's end (``tokenizer.end_ids()[0]``) to each
  answer that ended before ``max_new_tokens``, so stopping is trained (the
  whole-answer form ``answer_format`` rewards needs it).

The learner samples in a worker thread (one step ahead at most: tunix
waits for the step's data before updating, and never prepares the next
before it has); the loop's SIGTERM hook still runs between two updates.

Progress per step: the loss, the learning rate, the gradient norm, and
``metrics`` ``reward_mean``, ``reward_std`` (over the step's answers),
``kl`` (the mean per-token KL to the reference, the k3 estimate the loss
uses; null at beta 0) and
``completion_length`` (mean tokens per answer, its end not counted); at
logged steps (every ``ceil(total_steps / 50)``-th and the last) a few
``samples`` ``{prompt, completion, reward}``.  The report (``sample_held_out``
> 0) answers every held-out prompt (at most ``MAX_HELD_OUT_PROMPTS``)
greedily with the base model before training and with the trained model
after it, scored with the run's reward: ``held_out_rewards`` ``{prompts,
max_new_tokens, base: {reward_mean, final_answer_rate, format_rate},
trained: {...}, samples: [...]}`` (the first ``sample_held_out`` answers),
and ``grpo_timing``: the mean step time and its share spent sampling.

Measured (2-core CPU shared with other work, gemma3-270m, LoRA rank 8,
2 prompts x 4 answers of up to 24 tokens, prompts 78 tokens, 24 steps at
learning rate 2e-4): 18.3 s a step after the first (37.7 s), 35% of it
sampling; peak RSS 8.7 GB (2.8 GB once the model is loaded; sampling and
the reference's log-probabilities take it to 6.9 GB, the first update to
8.7: tunix's loss takes logits over the 262k-token vocabulary for the whole
prompt and answer).  Held-out reward, greedy, 40 prompts: 0.147 (base) ->
0.350 (trained); right answers 2 -> 4; the trained model leads with
``The answer is N.`` but has not learnt to stop (it repeats the line).
"""

import dataclasses
import functools
import math
import resource
import time

import numpy as np

from tasks.rewards import answer_format, final_answer, weighted_sum

from ..data import batch_indices, held_out_mask, learning_rate_at, load_records
from ..errors import ConfigError, DatasetError
from ..events import ABSENT, Progress, finite_or_none
from .base import Method

#: Held-out prompts the report answers at most (the shipped arithmetic set holds out 40).
MAX_HELD_OUT_PROMPTS = 64
#: Sampled answers a logged step shows, and the characters kept of each string.
SAMPLES_PER_STEP = 3
SAMPLE_CHARS = 300
#: Steps of a run whose progress carries samples, at most (plus the last).
SAMPLED_STEPS = 50


def step_seed(seed, step):
    """The sampling seed of ``step`` (1-based): a function of the run's seed
    and the step alone, so a resumed run samples as the uninterrupted one."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, 4, step]).generate_state(1)[0] & 0x7FFFFFFF)


def _cut(text):
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS - 3] + "..."


class StepRecords:
    """What the learner's worker thread learns of each step while it
    samples (answers, rewards, lengths, seconds), read by ``progress``."""

    def __init__(self):
        self.steps = {}
        #: (step, perf_counter at its sampling's start, seconds spent sampling), in order.
        self.timings = []
        self.current = None

    def begin(self, step):
        self.current = self.steps[step] = {}
        self.timings.append([step, time.perf_counter(), 0.0])

    def sampled(self, lengths, seconds):
        self.current["lengths"] = lengths
        self.timings[-1][2] += seconds

    def scored(self, prompts, completions, rewards):
        self.current.update(prompts=list(prompts), completions=list(completions),
                            rewards=[float(r) for r in rewards])

    def pop(self, step):
        return self.steps.pop(step, {})

    def timing(self, end):
        """``{steps, first_step_s, step_s, sample_share}``: the first step
        (compilation included) apart, the mean of the others; ``end`` is
        the perf_counter when the last step's update was done."""
        if not self.timings:
            return None
        starts = [t for _, t, _ in self.timings[1:]] + [end]
        spans = [(b - a, gen) for (_, a, gen), b in zip(self.timings, starts)]
        rest = spans[1:]
        total = sum(s for s, _ in rest)
        return {"steps": len(spans), "first_step_s": round(spans[0][0], 3),
                "step_s": round(total / len(rest), 3) if rest else None,
                "sample_share": round(sum(g for _, g in rest) / total, 3) if rest and total > 0 else None}


def _rollout_class():
    from tunix.rl.rollout import vanilla_rollout

    from workers.sampling.generate import cache_config

    class Rollout(vanilla_rollout.VanillaRollout):
        """tunix's vanilla rollout, built as ``RLCluster`` builds a custom
        engine; each answer that ended gets its end token back (see the
        module docstring), and the sampling time goes to ``records``."""

        def __init__(self, rollout_actor, tokenizer, mesh, rollout_config, *, model_spec, end_id, records):
            super().__init__(rollout_actor, tokenizer, cache_config(model_spec, rollout_config.kv_cache_size))
            self.end_id, self.records = end_id, records

        def generate(self, prompts, rollout_config, **kwargs):
            start = time.perf_counter()
            out = super().generate(prompts, rollout_config, **kwargs)
            limit = rollout_config.max_tokens_to_generate
            lengths = [len(t) for t in out.tokens]
            out.tokens = [np.append(t, np.asarray(self.end_id, t.dtype)) if len(t) < limit else t
                          for t in out.tokens]
            self.records.sampled(lengths, time.perf_counter() - start)
            return out

    return Rollout


def _learner_class():
    from tunix.rl import rl_cluster as rl
    from tunix.rl.grpo import grpo_learner

    class Learner(grpo_learner.GRPOLearner):
        """``GRPOLearner``, its sampling seeded per step and its answers recorded."""

        def __init__(self, *args, seed, records, **kwargs):
            super().__init__(*args, **kwargs)
            self.run_seed, self.records = seed, records

        def _generate_and_compute_advantage(self, training_input, mode=rl.Mode.TRAIN):
            # In the worker thread, before the step's update: ``train_steps`` updates are done.
            step = self.rl_cluster.actor_trainer.train_steps + 1
            configs = self.rl_cluster.cluster_config.rollout_config
            configs[mode] = dataclasses.replace(configs[mode], seed=step_seed(self.run_seed, step))
            self.records.begin(step)
            return super()._generate_and_compute_advantage(training_input, mode)

        def _compute_rewards(self, prompts, completions, mode, step=None, **kwargs):
            rewards = super()._compute_rewards(prompts, completions, mode, step=step, **kwargs)
            self.records.scored(prompts, completions, rewards)
            return rewards

    return Learner


class GrpoTrainer:
    """The actor trainer as the loop drives it: every attribute is the
    actor's (``train_steps``, ``model``, ``checkpoint_manager``, hooks,
    ``close``), but ``train`` runs the GRPO learner, which calls the actor's
    own ``train`` once per step."""

    def __init__(self, learner, records):
        self.learner, self.records = learner, records
        self.actor = learner.rl_cluster.actor_trainer
        #: perf_counter when the learner returned (the last step's update done).
        self.ended = None

    def __getattr__(self, name):
        return getattr(self.actor, name)

    def train(self, batches, eval_ds=None):
        # ``eval_ds``: GRPO has no held-out loss (the report scores held-out answers instead).
        try:
            self.learner.train(batches)
        finally:
            self.ended = time.perf_counter()
            self.learner.executor.shutdown(wait=True)


class HeldOutRewards:
    """The held-out prompts answered greedily, scored with the run's reward."""

    def __init__(self, records, reward, method):
        self.records, self.reward, self.method = records, reward, method
        self.base = self.base_texts = None

    def __bool__(self):
        return bool(self.records)

    def answer(self, model):
        from tunix.generate.sampler import Sampler

        from workers.sampling.generate import PromptTokenizer, cache_config

        m = self.method
        width, new = m.prompt_width, m.spec.grpo.max_new_tokens
        sampler = Sampler(model, PromptTokenizer(m.tokenizer, max_prompt_tokens=width),
                          cache_config(m.model_spec, width + new))
        # In chunks of a training step's answers: the prefill's logits are prompts x
        # width x vocabulary (40 Gemma prompts at once: 4 GB).  The last chunk is
        # filled from the first prompts again (one compiled shape).
        prompts, size = [r.prompt for r in self.records], m.spec.batch_size * m.spec.grpo.num_generations
        texts = []
        for start in range(0, len(prompts), size):
            chunk = [prompts[i % len(prompts)] for i in range(start, start + size)]
            out = sampler(chunk, max_generation_steps=new, max_prompt_length=width,
                          eos_tokens=list(m.tokenizer.end_ids()))
            texts.extend(out.text)
        return texts[:len(prompts)]

    def score(self, texts):
        n = len(self.records)
        rewards = [self.reward(r.prompt, t, r.answer) for r, t in zip(self.records, texts)]
        return {"reward_mean": round(sum(rewards) / n, 4),
                "final_answer_rate": round(sum(final_answer(r.prompt, t, r.answer) for r, t in
                                               zip(self.records, texts)) / n, 4),
                "format_rate": round(sum(answer_format(r.prompt, t, r.answer) == 1.0 for r, t in
                                         zip(self.records, texts)) / n, 4)}, rewards

    def before(self, model):
        self.base_texts = self.answer(model)
        self.base, self.base_rewards = self.score(self.base_texts)

    def after(self, model, log, samples):
        texts = self.answer(model)
        trained, rewards = self.score(texts)
        report = {"prompts": len(self.records), "max_new_tokens": self.method.spec.grpo.max_new_tokens,
                  "base": self.base, "trained": trained, "samples": []}
        for r, base, last, base_reward, reward in list(zip(self.records, self.base_texts, texts,
                                                           self.base_rewards, rewards))[:samples]:
            report["samples"].append({"prompt": _cut(r.prompt), "answer": r.answer, "base": _cut(base),
                                      "trained": _cut(last), "base_reward": base_reward, "trained_reward": reward})
        log(f"held-out rewards ({len(self.records)} prompts, greedy): reward mean {self.base['reward_mean']:.3f} "
            f"(base) -> {trained['reward_mean']:.3f}, final answer right {self.base['final_answer_rate']:.2f} -> "
            f"{trained['final_answer_rate']:.2f}, form {self.base['format_rate']:.2f} -> {trained['format_rate']:.2f}")
        return report


class Grpo(Method):
    name = "grpo"

    def load(self, seq_len):
        if self.run.dataset_kind != "jsonl":
            raise DatasetError("method grpo needs prompts with answers ({prompt, answer}); the synthetic "
                               "dataset holds none")
        records = load_records(self.run.dataset_path, "grpo")
        settings = self.spec.grpo
        room = seq_len - settings.max_new_tokens
        if room < 2:
            raise ConfigError(f"grpo.max_new_tokens {settings.max_new_tokens} leaves no room for a prompt in the "
                              f"run's {seq_len} tokens (effective_max_seq_length)")
        lengths = [len(self.tokenizer.prompt_ids(r.prompt)) for r in records]
        #: Every prompt is left-padded to this many tokens (one compiled shape); a longer
        #: one keeps its first token (BOS) and its tail, which opens the answer.
        self.prompt_width = min(max(lengths), room)
        self.truncated = sum(n > room for n in lengths)
        out = held_out_mask(len(records))
        out = np.zeros(len(records), bool) if out is None else out
        self.train_records = [r for r, o in zip(records, out) if not o]
        held = [r for r, o in zip(records, out) if o]
        self.num_examples = len(self.train_records)
        self.held_out_examples = len(held)
        self.batch_seq_length = self.prompt_width + settings.max_new_tokens
        self.reward = weighted_sum([(t.name, t.weight) for t in settings.reward])
        self.held_out = HeldOutRewards(held[:MAX_HELD_OUT_PROMPTS] if self.spec.sample_held_out else [],
                                       self.reward, self)
        self.records = StepRecords()
        self.reference = None

    def describe_data(self):
        s = self.spec.grpo
        return (f"{self.num_examples} prompts, {self.truncated} truncated, {self.held_out_examples} held out; "
                f"{s.num_generations} answers each of up to {s.max_new_tokens} tokens, prompts "
                f"{self.prompt_width} tokens")

    def before_trainer(self, model):
        # Before the trainer exists: a resumed trainer restores its checkpoint into ``model``.
        copied = False
        if self.spec.grpo.beta > 0:
            if self.frozen_base is not None:
                self.reference = self.frozen_base
            else:
                from flax import nnx

                self.reference, copied = nnx.clone(model), True
        if self.held_out:
            self.held_out.before(model)
        return copied or bool(self.held_out)

    def build_trainer(self, model, optimizer, config):
        from jax.sharding import Mesh
        from tunix.rl import rl_cluster as rl
        from tunix.rl.grpo import grpo_learner
        from tunix.rl.rollout import base_rollout
        from tunix.sft import checkpoint_manager

        from workers.sampling.generate import PromptTokenizer

        s = self.spec.grpo
        ends = list(self.tokenizer.end_ids())
        rollout = base_rollout.RolloutConfig(
            max_tokens_to_generate=s.max_new_tokens, temperature=s.temperature, top_p=1.0, top_k=None,
            max_prompt_length=self.prompt_width, kv_cache_size=self.prompt_width + s.max_new_tokens,
            eos_tokens=ends)
        # No checkpoint folder: RLCluster would put it under ``actor/`` (see the module docstring).
        training = rl.RLTrainingConfig(actor_optimizer=optimizer, eval_every_n_steps=config.eval_every_n_steps,
                                       max_steps=config.max_steps, pbar_description=None)
        # One device, no mesh (as the SFT trainer runs): the rollout and the
        # reference then share the actor's arrays instead of resharded copies.
        no_mesh = Mesh(np.empty((), dtype=object), ())
        cluster = rl.RLCluster(
            actor=model, reference=self.reference,
            tokenizer=PromptTokenizer(self.tokenizer, max_prompt_tokens=self.prompt_width),
            cluster_config=rl.ClusterConfig(
                role_to_mesh={role: no_mesh for role in (rl.Role.ACTOR, rl.Role.REFERENCE, rl.Role.ROLLOUT)},
                rollout_engine=functools.partial(_rollout_class(), model_spec=self.model_spec, end_id=ends[0],
                                                 records=self.records),
                rollout_config={rl.Mode.TRAIN: rollout}, training_config=training))
        cluster._anchor_policy_state = None  # a whole copy of the actor, never read by GRPO (docstring)
        actor = cluster.actor_trainer
        # The platform's checkpoints, restored as PeftTrainer.__init__ restores its own.
        actor.checkpoint_manager = checkpoint_manager.CheckpointManager(
            root_directory=config.checkpoint_root_directory, options=config.checkpointing_options)
        actor._train_steps, actor._restored_custom_metadata = actor.checkpoint_manager.maybe_restore(
            actor.model, actor.optimizer, restore_only_lora_params=actor._lora_enabled)
        actor._iter_steps = actor._train_steps
        reward = self.reward

        def rewards(prompts, completions, answer, **_):
            return [reward(p, c, a) for p, c, a in zip(prompts, completions, answer)]

        # The KL estimator of the GRPO paper (Schulman's k3, ``low_var_kl``), not tunix's
        # default ``kl`` (log-ratio): at the reference its gradient is zero, where the
        # log-ratio's is the sampled tokens' score, noise that Adam turns into full-size
        # steps (measured: a LoRA Gemma 3 270M drifted to a KL of 0.8 in 3 updates on zero rewards).
        algo = grpo_learner.GRPOConfig(num_generations=s.num_generations, num_iterations=1, beta=s.beta,
                                       epsilon=s.epsilon, kl_loss_mode="low_var_kl")
        learner = _learner_class()(cluster, algo, reward_fns=[rewards], seed=self.spec.seed, records=self.records)
        self.trainer = GrpoTrainer(learner, self.records)
        return self.trainer

    def batches(self, total_steps):
        prompts = np.array([r.prompt for r in self.train_records], dtype=object)
        answers = np.array([r.answer for r in self.train_records], dtype=object)
        for idx in batch_indices(self.num_examples, self.spec.batch_size, self.spec.seed, total_steps):
            yield {"prompts": prompts[idx], "answer": answers[idx]}

    def _samples(self, record):
        """A few of the step's answers: the first answer to each prompt, then the second..."""
        completions = record.get("completions") or []
        g, n = self.spec.grpo.num_generations, len(completions)
        order = [b * g + k for k in range(g) for b in range(n // g)]
        return [{"prompt": _cut(record["prompts"][i]), "completion": _cut(completions[i]),
                 "reward": record["rewards"][i]} for i in order[:SAMPLES_PER_STEP]]

    def progress(self, ctx, step, loss, total_steps):
        record = self.records.pop(step)
        rewards, lengths = record.get("rewards"), record.get("lengths")
        kl = self.last_metric(ctx, "kl") if self.spec.grpo.beta > 0 else None
        metrics = {"reward_mean": finite_or_none(float(np.mean(rewards))) if rewards else None,
                   "reward_std": finite_or_none(float(np.std(rewards))) if rewards else None,
                   "kl": None if kl is None else finite_or_none(float(kl)),
                   "completion_length": float(np.mean(lengths)) if lengths else None}
        every = max(1, math.ceil(total_steps / SAMPLED_STEPS))
        samples = self._samples(record) if record and (step % every == 0 or step == total_steps) else ABSENT
        grad_norm = self.last_metric(ctx, "grad_norm")
        return Progress(step=step, total_steps=total_steps, loss=loss,
                        learning_rate=learning_rate_at(self.spec.learning_rate, total_steps, step - 1),
                        grad_norm=ABSENT if grad_norm is None else finite_or_none(float(grad_norm)),
                        metrics=metrics, samples=samples)

    def report(self, model, log):
        extra = {}
        trainer = getattr(self, "trainer", None)
        timing = self.records.timing(trainer.ended) if trainer is not None and trainer.ended else None
        if timing:
            timing["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            extra["grpo_timing"] = timing
            if timing["step_s"] is not None:
                log(f"grpo: {timing['steps']} steps, {timing['step_s']:.2f} s a step after the first "
                    f"({timing['first_step_s']:.1f} s), {100 * timing['sample_share']:.0f}% of it sampling; "
                    f"peak RSS {timing['peak_rss_mb']} MB")
        if self.held_out:
            extra["held_out_rewards"] = self.held_out.after(model, log, self.spec.sample_held_out)
        return extra
