"""The training's event lines: every kind round-trips through ``parse_event``;
what this version cannot read never raises."""

import json

import pytest

from workers.training.events import (
    ABSENT,
    EVENT_PREFIX,
    KINDS,
    Checkpoint,
    Eval,
    Progress,
    Result,
    Start,
    Unknown,
    parse_event,
)

EXAMPLES = [
    Start(total_steps=24, param_count=1000, trainable_params=10, device="cpu", model_id="llama3-tiny", start_step=0,
          batches_per_epoch=3, num_examples=20, effective_max_seq_length=64, batch_seq_length=48, batch_size=8,
          steps_capped=False),
    Progress(step=1, total_steps=24, loss=5.5, learning_rate=1e-3, grad_norm=0.75),
    Progress(step=2, total_steps=24, loss=5.25, learning_rate=1e-3, grad_norm=None),
    Progress(step=3, total_steps=24, loss=5.0, learning_rate=1e-3),
    Checkpoint(step=12, path="/r/checkpoints"),
    Checkpoint(step=13, path="/r/checkpoints", final=True, reason="sigterm"),
    Eval(step=12, eval_loss=4.5, examples=3),
    Eval(step=24, eval_loss=None, examples=3),
    Result(final_loss=1.5, steps=24, total_steps=24, duration_s=2.5, effective_max_seq_length=64, batch_seq_length=48,
           param_count=1000, trainable_params=10, start_step=0, final_eval_loss=1.75, eval_step=24,
           held_out_examples=3),
    Result(final_loss=None, steps=24, total_steps=24, duration_s=0.5, effective_max_seq_length=64,
           batch_seq_length=48, param_count=1000, trainable_params=1000, start_step=24, final_eval_loss=None,
           eval_step=None, held_out_examples=0, final_loss_from="checkpoint",
           held_out_samples={"check": None, "prompts": 1, "samples": [{"prompt": "p", "final": "f"}]}),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: f"{e.kind}")
def test_every_kind_round_trips_through_its_line(event):
    # Given an event as the training emits it
    line = event.line()
    # When the worker parses its line
    parsed = parse_event(line)
    # Then it is the same event, and writes the same line again
    assert type(parsed) is type(event) and parsed == event
    assert parsed.line() == line
    assert json.loads(line[len(EVENT_PREFIX):])["event"] == event.kind


def test_every_kind_has_an_example():
    assert {type(e) for e in EXAMPLES} == set(KINDS.values())


def test_the_line_has_the_documented_keys_in_order_and_leaves_absent_ones_out():
    assert Progress(step=3, total_steps=24, loss=5.0, learning_rate=0.5).line() == (
        '@@tunix {"event":"progress","step":3,"total_steps":24,"loss":5.0,"learning_rate":0.5}')
    assert Progress(step=3, total_steps=24, loss=5.0, learning_rate=0.5, grad_norm=None).to_dict()["grad_norm"] is None
    assert Checkpoint(step=5, path="p", final=True, reason="sigterm").line() == (
        '@@tunix {"event":"checkpoint","step":5,"path":"p","final":true,"reason":"sigterm"}')
    result = EXAMPLES[-1].to_dict()
    assert list(result)[-2:] == ["final_loss_from", "held_out_samples"]
    assert "final_loss_from" not in EXAMPLES[-2].to_dict() and "held_out_samples" not in EXAMPLES[-2].to_dict()
    assert parse_event(Checkpoint(step=5, path="p").line()).final is ABSENT


def test_keys_a_newer_training_adds_are_kept_and_written_back():
    line = EVENT_PREFIX + json.dumps({"event": "progress", "step": 1, "total_steps": 2, "loss": 1.0,
                                      "learning_rate": 0.1, "reward": 0.5}, separators=(",", ":"))
    event = parse_event(line)
    assert isinstance(event, Progress) and event.step == 1 and event.extra == {"reward": 0.5}
    assert event.line() == line


@pytest.mark.parametrize("payload", [
    {"event": "dpo_margin", "step": 1},  # a kind this version does not know
    {"step": 1},  # no kind at all
    {"event": ["progress"]},  # a kind that is not a string
    {"event": "progress", "step": 1},  # a known kind missing its required keys
])
def test_an_event_this_version_cannot_read_is_unknown_and_keeps_its_data(payload):
    event = parse_event(EVENT_PREFIX + json.dumps(payload))
    assert isinstance(event, Unknown) and event.data == payload and event.to_dict() == payload
    assert event.kind == (payload["event"] if isinstance(payload.get("event"), str) else None)


def test_a_missing_key_is_named():
    assert parse_event(EVENT_PREFIX + '{"event":"eval","step":1,"examples":2}').problem == (
        "eval event without 'eval_loss'")


@pytest.mark.parametrize("line", [
    "step 1/24 loss 5.0",  # a log line
    EVENT_PREFIX + '{"event": "progress"',  # cut short
    EVENT_PREFIX + "[1, 2]",  # not an object
    EVENT_PREFIX + "null",
    EVENT_PREFIX,
    EVENT_PREFIX + "[" * 100_000,  # nested past the recursion limit
    "@@tunix{}",  # no space after the prefix
    "",
])
def test_a_line_that_is_no_event_parses_to_none_without_raising(line):
    assert parse_event(line) is None


def test_a_trailing_newline_is_read():
    assert parse_event(EXAMPLES[1].line() + "\n") == EXAMPLES[1]


def test_emit_writes_an_event_or_a_plain_dict_as_one_line(capsys):
    from workers.training.events import emit

    emit(EXAMPLES[4])
    emit({"event": "result", "outputs": ["x"]})  # the sampling program's result
    assert capsys.readouterr().out.splitlines() == [EXAMPLES[4].line(), '@@tunix {"event":"result","outputs":["x"]}']


def test_the_runners_drain_hands_events_typed_and_keeps_the_rest_as_log_lines(tmp_path):
    import io

    from workers.runner import _Stream

    # Given a training's stdout with a log line, a progress, a cut-short event line and a newer kind
    out = "\n".join(["step 1/24 loss 5.0", EXAMPLES[1].line(), EVENT_PREFIX + '{"event": "progr',
                     EVENT_PREFIX + '{"event":"reward","step":1}']) + "\n"
    lines, events = [], []
    # When the runner's drain reads it
    stream = _Stream(io.StringIO(out), tmp_path / "stdout.log", lines.append, events.append)
    stream.run()
    # Then the events arrive typed (the newer kind as Unknown), the other lines as log lines
    assert events == [EXAMPLES[1], Unknown({"event": "reward", "step": 1})]
    assert lines == ["step 1/24 loss 5.0", EVENT_PREFIX + '{"event": "progr'] == list(stream.tail)
    assert (tmp_path / "stdout.log").read_text() == "".join(f"{line}\n" for line in lines)  # events are not logged


def test_the_monitor_records_progress_and_evals_by_type():
    from workers.monitor import RunMonitor

    # Given a monitor, without its database (gathering needs none)
    monitor = RunMonitor.__new__(RunMonitor)
    import threading

    monitor._lock, monitor._metrics, monitor._evals, monitor.progress, monitor.attempt = \
        threading.Lock(), [], [], None, 2
    # When it is handed each kind, an unknown one included
    for event in EXAMPLES + [Unknown({"event": "reward"})]:
        monitor.event(event)
    # Then the progress events are metric rows (an absent grad_norm is null), the evals eval rows
    assert monitor._metrics == [(1, 5.5, 1e-3, 0.75, 2, None, None), (2, 5.25, 1e-3, None, 2, None, None),
                                (3, 5.0, 1e-3, None, 2, None, None)]
    assert monitor._evals == [(12, 4.5, 3, 2), (24, None, 3, 2)]
    assert monitor.progress == {"step": 3, "total_steps": 24, "loss": 5.0}
