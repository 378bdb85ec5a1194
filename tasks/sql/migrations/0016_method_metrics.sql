-- A training method's own figures per step, beside the loss
-- (workers/training/methods/): DPO's reward accuracy and margin, GRPO's
-- reward mean and spread, KL and completion length, as {name: number};
-- and, at GRPO's logged steps, a few sampled completions with their rewards
-- ([{prompt, completion, reward}]).  NULL for SFT and for runs before it.
ALTER TABLE tunix_run_metrics ADD COLUMN metrics jsonb, ADD COLUMN samples jsonb;
