"""Samples of the held-out prompts, before and after training: what the
fine-tune changed, in words and, where the dataset has a check, in rates.

At the start the model is the base (a LoRA run's adapters start at zero; a
full run's weights are the preset's, or a tiny model's seeded init); at the
end it is the trained model.  The first ``spec.sample_held_out`` held-out
records of a prompt/completion dataset (every 10th, as the eval loss uses)
are completed greedily (``workers/sampling/generate.py``), scored by the
dataset's check (``tasks/checks.py``) and reported in the result::

    "held_out_samples": {"check": "json_person" | null, "prompts": N, "max_new_tokens": T,
                         "base": {"format_rate", "correct_rate"}, "final": {...},
                         "samples": [{"prompt", "reference", "base", "final",
                                      "base_format", "final_format", ...}]}

Greedy, so the same checkpoint gives the same answers every time.  A
resumed run samples its base again (it is the same base: same weights, same
seed), so its report equals an uninterrupted run's.
"""

from tasks.checks import check_of, rates

from .data import held_out_mask, read_records

#: Tokens each answer may take: a json-person answer is ~20 Gemma tokens
#: (~45 bytes for the byte-level tiny models, which rarely get there).
MAX_NEW_TOKENS = 48


class HeldOutSamples:
    def __init__(self, spec, run, model_spec, tokenizer):
        self.model_spec, self.tokenizer = model_spec, tokenizer
        self.check_name, self.check = check_of(spec.dataset_key)
        records = read_records(run.dataset_kind, run.dataset_path) if spec.sample_held_out else []
        mask = held_out_mask(len(records))
        held = [r for r, out in zip(records, mask if mask is not None else []) if out and r[0]]
        self.records = held[:spec.sample_held_out]
        self.base = None

    def __bool__(self):
        return bool(self.records)

    def _sample(self, model):
        from workers.sampling.generate import generate

        out = generate(model, self.tokenizer, [p for p, _ in self.records], model_spec=self.model_spec,
                       max_new_tokens=MAX_NEW_TOKENS)
        answers = []
        for (prompt, reference), sample in zip(self.records, out):
            score = self.check(prompt, sample["text"], reference) if self.check else None
            answers.append({"text": sample["text"], "score": score})
        return answers

    def before(self, model):
        self.base = self._sample(model)

    def after(self, model, log):
        """The result's ``held_out_samples``, comparing the base's answers with ``model``'s."""
        final = self._sample(model)
        report = {"check": self.check_name, "prompts": len(self.records), "max_new_tokens": MAX_NEW_TOKENS,
                  "samples": []}
        for (prompt, reference), base, last in zip(self.records, self.base, final):
            item = {"prompt": prompt, "reference": reference, "base": base["text"], "final": last["text"]}
            if self.check:
                item.update(base_format=base["score"]["format"], final_format=last["score"]["format"],
                            base_correct=base["score"]["correct"], final_correct=last["score"]["correct"])
            report["samples"].append(item)
        if self.check:
            report["base"] = rates([a["score"] for a in self.base])
            report["final"] = rates([a["score"] for a in final])
            log(f"held-out samples ({self.check_name}, {len(self.records)} prompts): format rate "
                f"{report['base']['format_rate']:.2f} (base) -> {report['final']['format_rate']:.2f}, correct "
                f"{report['base']['correct_rate']:.2f} -> {report['final']['correct_rate']:.2f}")
        else:
            log(f"held-out samples: {len(self.records)} prompts answered before and after training (no check)")
        return report
