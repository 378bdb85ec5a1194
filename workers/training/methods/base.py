"""``Method``: the hooks a training method supplies (``methods/__init__``
says when ``train()`` calls each; ``sft.Sft`` is the example to copy)."""


class Method:
    #: The method's name (its key in ``METHODS``).
    name = ""

    def __init__(self, job, model_spec, tokenizer):
        self.job, self.spec, self.run = job, job.spec, job.run
        self.model_spec, self.tokenizer = model_spec, tokenizer
        #: Set by ``load``: the training examples, their padded length, the held-out examples.
        self.num_examples = self.batch_seq_length = self.held_out_examples = 0
        #: Set by ``build_trainer``: the held-out inputs (tunix's ``eval_ds``), empty for none.
        self.eval_batches = []
        #: Set by ``train()`` before ``before_trainer``: for a LoRA run, the base model
        #: without adapters (its arrays are the adapted model's own: a reference that costs
        #: no memory); None for full fine-tuning, where a method that needs a reference
        #: keeps a copy of the model before training (``nnx.clone``).
        self.frozen_base = None

    def load(self, seq_len):
        """Read the dataset (examples of at most ``seq_len`` tokens); set the counts above.
        Raises ``DatasetError`` for a malformed dataset (exit 2, before JAX starts)."""
        raise NotImplementedError

    def describe_data(self):
        """The data's part of the opening log line, inside its parentheses."""
        return f"{self.num_examples} examples"

    def before_trainer(self, model):
        """See the base ``model`` before the trainer exists; True when it took time."""
        return False

    def build_trainer(self, model, optimizer, config):
        """The tunix trainer (a ``PeftTrainer`` or a subclass): its model-input
        function and its loss set, its checkpointing from ``config``."""
        raise NotImplementedError

    def batches(self, total_steps):
        """The training inputs, ``total_steps`` of them, the same for the same seed."""
        raise NotImplementedError

    def progress(self, ctx, step, loss, total_steps):
        """The ``events.Progress`` of ``step`` (``ctx`` is tunix's trainer, whose
        ``metrics_logger`` holds the step's metrics)."""
        raise NotImplementedError

    @staticmethod
    def last_metric(ctx, name):
        """The value tunix's metrics logger recorded last for ``name`` in
        training (``ctx``: the trainer), or None when it recorded none."""
        from tunix.sft import metrics_logger

        try:
            return ctx.metrics_logger.get_metric_history(ctx.metrics_prefix, name, metrics_logger.Mode.TRAIN)[-1]
        except (ValueError, IndexError, KeyError):
            return None

    def report(self, model, log):
        """The result event's extra fields, once the last step is done (``model`` trained)."""
        return {}
