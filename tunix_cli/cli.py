"""``tunix``: submit, watch, follow, cancel and download runs from a terminal.

A thin shell over ``tunix_cli.client.Client`` (HTTP only: ``--url`` and
``--token``, else ``TUNIX_URL`` and ``TUNIX_TOKEN``, else the profile
``tunix login`` saved: ``profiles.py``; login, users, tokens and the audit
trail are ``accounts.py``).  Every command takes ``--json`` for scripts.  An error is
one line on stderr (the API's message and its bad fields, named as the flags
that set them), never a traceback; the exit status says what happened
(``EXIT``).

A one-shot command (``list``, ``status``, ``submit``, ...) aimed at an
address where nothing listens says so at once (the client's ``fail_fast``);
the commands that wait (``wait``, ``logs -f``) ride out an unreachable API
for ``--patience`` seconds.  Run and sweep files are JSON or YAML
(``load_document``).  Shell completion is click's (``tunix completion``).
"""

import itertools
import json
import os
import re
import sys
import typing

import click
import click.shell_completion
import pydantic
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from tasks import lifecycle
from tasks.run_spec import RunSpec

from . import client as api
from . import profiles
from tasks.wire import LogLine, Progress as StepProgress, StatusEvent

#: Why a command could not tell how a run ended: its exit status, and what
#: the help says (2 is click's own usage error).
_COMMAND_EXITS = {
    "usage": (2, "usage"),
    "api_error": (5, "the API refused the request"),
    "unreachable": (6, "the API is unreachable"),
    "still_running": (7, "still running (wait --timeout)"),
    "interrupted": (130, "interrupted"),
}
#: The final status of a run that succeeded: exit 0.
SUCCEEDED = lifecycle.MOVES["finish"].target.value
#: How a run ended, in the lifecycle's order after success: 0 completed, 1
#: failed, 3 cancelled, 4 timeout; a new final status takes the next code no
#: command uses (tests/unit/test_cli_exits.py pins these, which scripts read).
_RUN_EXITS = dict(zip(
    [SUCCEEDED, *(s.value for s in lifecycle.RunStatus if s in lifecycle.FINAL and s.value != SUCCEEDED)],
    (n for n in itertools.count() if n not in {code for code, _ in _COMMAND_EXITS.values()})))
#: Exit statuses: how a run ended, or why the command could not tell.
EXIT = {**_RUN_EXITS, **{name: code for name, (code, _) in _COMMAND_EXITS.items()}}
#: The exit statuses, as the help lists them.
EXIT_HELP = "Exit status: " + ", ".join(f"{code} {words}" for code, words in sorted(
    [(code, status.replace("_", " ")) for status, code in _RUN_EXITS.items()] + list(_COMMAND_EXITS.values()))) + "."
#: The exit status of a failure that is not a run's (a sample's, an export's).
FAILED = EXIT[lifecycle.RunStatus.FAILED.value]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Failure(click.ClickException):
    """One line on stderr and an exit status from ``EXIT``."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None):
        click.echo(f"error: {self.message}", err=True)


def _flag(field):
    """The option that sets a run request's field (``learning_rate`` -> ``--learning-rate``)."""
    if field == "dry_run":
        return "--train/--dry-run"
    if field == "tags":
        return "--tag"
    return "--" + field.replace("_", "-")


def _api_failure(exc):
    if isinstance(exc, api.Unreachable):
        return Failure(str(exc), EXIT["unreachable"])
    message = exc.message
    if exc.fields:
        message += ": " + "; ".join(f"{_flag(f['field']) if f['field'] in RunSpec.model_fields else f['field']}: "
                                    f"{f['message']}" for f in exc.fields)
    return Failure(f"{message} [{exc.code}, HTTP {exc.status}]", EXIT["api_error"])


class _Command(click.Command):
    """Turns the client's two exceptions into one line and an exit status."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (api.ApiError, api.Unreachable) as exc:
            raise _api_failure(exc) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT["interrupted"])


class _Group(click.Group):
    command_class = _Command


def resolved(ctx):
    """The URL and token the command uses (``profiles.resolve``: flags, then
    the environment, then the profile), said once on stderr when a
    profile's token was left out or its file is readable by others."""
    obj = ctx.find_root().obj
    try:
        found = profiles.resolve(url=obj["url"], token=obj["token"], profile=obj["profile"])
    except profiles.ProfileError as exc:
        raise Failure(str(exc), EXIT["usage"]) from None
    if found.withheld:
        err.print(f"note: profile {found.profile!r}'s token is not sent to {found.url} ({found.url_from} URL): it "
                  "was saved for another one; tunix login --url or --token", markup=False)
    if found.token_from == "profile" and profiles.loose_mode(found.path) is not None:
        err.print(f"warning: {found.path} holds tokens and others may read it (mode "
                  f"{profiles.loose_mode(found.path):o}): chmod 600 it", markup=False)
    return found


def _client(ctx, waits=False):
    """The command's client, made on first use (``resolved``): fail-fast
    (nothing listening at the URL is said at once) unless the command
    ``waits`` (``wait``, ``logs -f``: they ride out an API restart from the
    start, for ``--patience``)."""
    obj = ctx.find_root().obj
    if obj["client"] is None:
        found = resolved(ctx)
        obj["resolved"] = found
        obj["client"] = api.Client(found.url, found.token or "", patience_s=obj["patience"], fail_fast=not waits)
    return obj["client"]


def _emit_json(data):
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _dump(model):
    return model.model_dump(mode="json")


def _table(headers, rows):
    """A table in a terminal; tab-separated lines, header first, in a pipe
    (nothing folded or cut, for ``cut``, ``awk`` and friends)."""
    if not out.is_terminal:
        for row in (headers, *rows):
            click.echo("\t".join(row))
        return
    table = Table()
    for i, name in enumerate(headers):
        table.add_column(name, no_wrap=i == 0)  # the first column (a run id, a step) is copied whole
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _exit_for(run):
    return EXIT.get(run.status, EXIT["still_running"])


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


@click.group(cls=_Group, epilog=EXIT_HELP)
@click.option("--url", default=None, help=f"The API (else env TUNIX_URL, else the profile's, else {api.DEFAULT_URL}).")
@click.option("--token", default=None, help="Bearer token (else env TUNIX_TOKEN, else the profile's: tunix login).")
@click.option("--profile", default=None, help="The profile tunix login saved (else env TUNIX_PROFILE, else "
                                               "'default').")
@click.option("--patience", type=float, default=30.0, show_default=True,
              help="Seconds an unanswered (or 503) request is retried before giving up (a one-shot command "
                   "gives up at once when nothing listens at the URL).")
@click.version_option(package_name="tunix-rt")
@click.pass_context
def main(ctx, url, token, profile, patience):
    """Tunix RT from a terminal: submit runs, watch them, follow their logs,
    cancel, resume and download checkpoints; log in, manage users and tokens."""
    ctx.obj = {"url": url, "token": token, "profile": profile, "patience": patience, "client": None}
    ctx.call_on_close(lambda: ctx.obj["client"] is not None and ctx.obj["client"].close())


# --------------------------------------------------------------------------- submit

class _JsonObject(click.ParamType):
    """An option given as a JSON object (the API validates its fields)."""

    name = "JSON"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.fail(f"not JSON: {exc}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail("expected a JSON object", param, ctx)
        return parsed


JSON_OBJECT = _JsonObject()


def _spec_options(command):
    """One option per field of the run request (``RunSpec``, the API's one
    schema), dashed; values go to the API as given and it validates them."""
    for name, field in reversed(list(RunSpec.model_fields.items())):
        if name == "dry_run":
            # The flag before the slash sets True: dry_run is True for --dry-run.
            command = click.option("--dry-run/--train", "dry_run", default=None,
                                   help="--train trains for real (default: a dry run, which validates and "
                                        "resolves everything and trains nothing).")(command)
            continue
        if name == "tags":  # a list: one --tag each
            command = click.option("--tag", "tags", multiple=True, help="A tag (repeatable): " + field.description)(
                command)
            continue
        annotation = field.annotation
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is typing.Literal:
            kind = click.Choice([str(a) for a in args])
        else:
            base = next((a for a in args if a is not type(None)), annotation) if args else annotation
            kind = {int: int, float: float, str: str}.get(base, str)
            if isinstance(base, type) and issubclass(base, pydantic.BaseModel):
                kind = JSON_OBJECT  # an object field, e.g. --lora '{"rank": 8}'
        default = None if field.is_required() else field.get_default()
        text = (field.description or "") + (" [required]" if field.is_required() else
                                            f" [API default: {default}]" if default is not None else "")
        if kind is JSON_OBJECT:
            text += " (a JSON object)"
        command = click.option(_flag(name), name, type=kind, default=None, help=text.strip() or None)(command)
    return command


class _YamlLoader(yaml.SafeLoader):
    """YAML's safe loader, with YAML 1.2's floats: PyYAML (YAML 1.1) reads
    ``learning_rate: 1e-4`` as the string "1e-4" (it wants ``1.0e-4``),
    which the API would refuse."""


_YamlLoader.yaml_implicit_resolvers = {key: list(value) for key, value in
                                       yaml.SafeLoader.yaml_implicit_resolvers.items()}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
               re.X),
    list("-+0123456789."))

#: File names read as YAML; any other is JSON.
YAML_SUFFIXES = (".yaml", ".yml")


def load_document(path, hint="PATH"):
    """A run or sweep file: YAML when its name ends ``.yaml``/``.yml``,
    else JSON; a ``click.BadParameter`` naming the file when it cannot be
    read or parsed."""
    try:
        with open(path, encoding="utf-8") as fh:
            if path.lower().endswith(YAML_SUFFIXES):
                return yaml.load(fh, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader
            return json.load(fh)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{path}: {' '.join(str(exc).split())}", param_hint=hint) from None


def _read_file(path):
    return load_document(path, hint="--file")


@main.command()
@_spec_options
@click.option("-f", "--file", "file_", type=click.Path(dir_okay=False),
              help="A run request, JSON or YAML (.yaml, .yml); flags override it.")
@click.option("--idempotency-key", help="Submitting again with this key answers the same run (default: a new key).")
@click.option("--wait", "wait_", is_flag=True, help="Show a progress bar until the run ends; exit with its status.")
@click.option("--follow", is_flag=True, help="Stream the run's log until it ends; exit with its status.")
@json_option
@click.pass_context
def submit(ctx, file_, idempotency_key, wait_, follow, as_json, **fields):
    """Submit one run; print its id."""
    if wait_ and follow:
        raise click.UsageError("--wait and --follow are exclusive")
    spec = _read_file(file_) if file_ else {}
    if not isinstance(spec, dict):
        raise click.BadParameter(f"{file_}: expected an object (a run request)", param_hint="--file")
    spec.update({name: list(value) if isinstance(value, tuple) else value
                 for name, value in fields.items() if value is not None and value != ()})
    client = _client(ctx)
    run = client.submit(spec, idempotency_key=idempotency_key)
    if not (wait_ or follow):
        if as_json:
            _emit_json(_dump(run))
        else:
            click.echo(run.run_id)
        return
    if not as_json:
        err.print(f"run {run.run_id} submitted ({'training' if not run.dry_run else 'dry run'})")
    final = _follow(client, run.run_id, as_json) if follow else _wait(client, run.run_id, as_json)
    _finish(ctx, final, as_json)


def _finish(ctx, run, as_json):
    if as_json:
        _emit_json(_dump(run))
    else:
        _print_outcome(run)
    ctx.exit(_exit_for(run))


def _print_outcome(run):
    line = f"run {run.run_id} {run.status}"
    if run.result and run.result.get("final_loss") is not None:
        line += f": final loss {run.result['final_loss']:.4f} after {run.result.get('steps')} steps"
    if run.duration_seconds is not None:
        line += f" ({run.duration_seconds:.1f}s)"
    (out if _exit_for(run) == 0 else err).print(line)
    if run.error:
        err.print(f"{run.error.get('type', 'error')}: {run.error.get('message', '')}", markup=False)


def _wait(client, run_id, as_json, timeout=None):
    """A live progress bar (step/total, loss, ETA) until the run ends;
    Ctrl-C stops waiting, not the run."""
    try:
        return _wait_with_bar(client, run_id, as_json, timeout)
    except KeyboardInterrupt:
        err.print(f"stopped waiting; run {run_id} goes on (tunix wait {run_id})")
        raise SystemExit(EXIT["interrupted"]) from None


def _wait_with_bar(client, run_id, as_json, timeout):
    if as_json or not err.is_terminal:
        return client.wait(run_id, timeout=timeout)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(f"run {str(run_id)[:8]}", total=None, loss="-")

        def on_event(event):
            if isinstance(event, StepProgress):
                loss = f"{event.loss:.4f}" if event.loss is not None else "-"
                bar.update(task, completed=event.step, total=event.total_steps, loss=loss)

        run = client.wait(run_id, timeout=timeout, on_event=on_event)
        if run.result and run.result.get("steps"):
            bar.update(task, completed=run.result["steps"])
        return run


def _follow(client, run_id, as_json, since=0):
    """Print the log until the run ends; Ctrl-C stops following, not the run."""
    try:
        for event in client.events(run_id, since=since, follow=True):
            _print_event(event, as_json)
    except KeyboardInterrupt:
        err.print(f"stopped following; run {run_id} goes on (tunix logs -f {run_id})")
        raise SystemExit(EXIT["interrupted"]) from None
    return client.get(run_id)


def _print_event(event, as_json):
    if isinstance(event, LogLine):
        if as_json:
            click.echo(json.dumps({"event": "log", **_dump(event)}))
        else:
            click.echo(event.line)
    elif as_json and isinstance(event, (StepProgress, StatusEvent)):
        click.echo(json.dumps({"event": "progress" if isinstance(event, StepProgress) else "status", **_dump(event)}))


# --------------------------------------------------------------------------- watching


@main.command()
@click.argument("run_id")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 7).")
@json_option
@click.pass_context
def wait(ctx, run_id, timeout, as_json):
    """Wait for a run to end, with a progress bar; exit with its status."""
    try:
        run = _wait(_client(ctx, waits=True), run_id, as_json, timeout=timeout)
    except api.WaitTimeout as exc:
        raise Failure(str(exc), EXIT["still_running"]) from None
    _finish(ctx, run, as_json)


@main.command()
@click.argument("run_id")
@json_option
@click.pass_context
def status(ctx, run_id, as_json):
    """A run's status, attempts, progress, result or error."""
    run = _client(ctx).get(run_id)
    if as_json:
        _emit_json(_dump(run))
        return
    table = Table(show_header=False, box=None)
    rows = [("run", run.run_id), ("status", run.status), ("mode", f"{run.mode}, "
                                                                   f"{'dry run' if run.dry_run else 'training'}"),
            ("dataset", run.dataset_key), ("model", run.model_id),
            ("attempts", f"{run.attempts}" + (f" of {run.max_attempts}" if run.max_attempts else "")),
            ("worker", run.worker_id or "-"), ("queued", str(run.queued_at or "-")),
            ("started", str(run.started_at or "-")), ("ended", str(run.completed_at or "-"))]
    if run.progress:
        rows.append(("progress", f"step {run.progress.step}/{run.progress.total_steps or '?'}"
                                 + (f", loss {run.progress.loss:.4f}" if run.progress.loss is not None else "")))
    if run.result and run.result.get("final_loss") is not None:
        rows.append(("final loss", f"{run.result['final_loss']:.4f}"))
    if run.error:
        rows.append(("error", f"{run.error.get('type')}: {run.error.get('message')}"))
    for key, value in rows:
        table.add_row(Text(key, style="bold"), Text(str(value)))  # Text: a "[" in a message is no markup
    out.print(table)


@main.command(name="list")
@click.option("--status", help="Only runs in this status.")
@click.option("--dataset-key")
@click.option("--model-id")
@click.option("--mode", type=click.Choice(["sync", "async"]))
@click.option("--mine", is_flag=True, help="Only my runs (the token's user).")
@click.option("--owner", help="Only this user's runs.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable: all of them).")
@click.option("--sweep", "sweep_id", help="Only the trials of this sweep.")
@click.option("--search", "q", help="Only runs whose name holds this (any case).")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@json_option
@click.pass_context
def list_(ctx, status, dataset_key, model_id, mode, mine, owner, tags, sweep_id, q, limit, offset, as_json):
    """The run history, newest first, as a table."""
    if mine and owner:
        raise click.UsageError("--mine and --owner are exclusive")
    page = _client(ctx).list(status=status, dataset_key=dataset_key, model_id=model_id, mode=mode,
                             owner="me" if mine else owner, tags=tags, sweep_id=sweep_id, q=q, limit=limit,
                             offset=offset)
    if as_json:
        _emit_json(_dump(page))
        return
    rows = []
    for run in page.data:
        loss = (run.result or {}).get("final_loss")
        if loss is None and run.progress is not None:
            loss = run.progress.loss
        step = run.progress.step if run.progress else (run.result or {}).get("steps")
        rows.append((run.run_id, run.name or "-", " ".join(run.tags) or "-", run.status,
                     "dry run" if run.dry_run else "training", run.dataset_key, run.model_id, str(run.attempts),
                     "-" if step is None else str(step), "-" if loss is None else f"{loss:.4f}",
                     str(run.queued_at or "-")[:19]))
    _table(("run", "name", "tags", "status", "kind", "dataset", "model", "attempts", "step", "loss", "queued"), rows)
    more = page.pagination
    counts = ", ".join(f"{n} {status}" for status, n in sorted(page.counts.items()))
    out.print(f"{len(page.data)} of {more.total}" + (f" ({counts})" if counts else "")
              + (f"; next: --offset {more.next_offset}" if more.next_offset is not None else ""), markup=False)


@main.command()
@click.argument("run_id")
@click.argument("text")
@json_option
@click.pass_context
def notes(ctx, run_id, text, as_json):
    """Set a run's notes to TEXT ("" clears them): its owner's or an admin's."""
    run = _client(ctx).update_run(run_id, notes=text)
    if as_json:
        _emit_json(_dump(run))
    else:
        out.print(f"run {run.run_id}: notes saved ({len(run.notes)} characters)", markup=False)


@main.command()
@click.argument("run_id")
@click.option("-f", "--follow", is_flag=True, help="Go on until the run ends (resumes across disconnects).")
@click.option("--since", type=int, default=0, help="Start after this line number.")
@click.option("--all", "whole", is_flag=True,
              help="The whole log, every attempt's, as the artifact store keeps it once the run's latest attempt "
                   "ended (the live log keeps at most 10,000 lines).")
@json_option
@click.pass_context
def logs(ctx, run_id, follow, since, whole, as_json):
    """A run's log; with -f, live until the run ends; with --all, the whole of it."""
    client = _client(ctx, waits=follow)
    if whole:
        if follow:
            raise click.UsageError("--all prints the log kept so far; -f follows the live one: choose one")
        _print_whole_log(client, run_id, as_json)
        return
    if follow:
        run = _follow(client, run_id, as_json, since=since)
        ctx.exit(_exit_for(run))
    for event in client.events(run_id, since=since, follow=False):
        _print_event(event, as_json)


def _print_whole_log(client, run_id, as_json):
    """``tunix logs --all``: the text as it streams; with --json, one object a line."""
    if not as_json:
        out_bytes = click.get_binary_stream("stdout")
        for chunk in client.full_log(run_id):
            out_bytes.write(chunk)
        out_bytes.flush()
        return
    number, rest = 0, b""
    for chunk in client.full_log(run_id):
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            number += 1
            click.echo(json.dumps({"line": number, "text": line.decode("utf-8", "replace")}))
    if rest:
        click.echo(json.dumps({"line": number + 1, "text": rest.decode("utf-8", "replace")}))


# --------------------------------------------------------------------------- acting


def _filter_options(command):
    """The bulk moves' filter (``POST /api/tunix/runs/cancel``, ``/resume``)."""
    for option in reversed([
            click.option("--status", help="Only runs in this status."),
            click.option("--sweep", "sweep_id", help="Only the trials of this sweep."),
            click.option("--dataset-key", help="Only runs of this dataset."),
            click.option("--model-id", help="Only runs of this model.")]):
        command = option(command)
    return command


def _bulk(ctx, run_id, filters, one, many, as_json):
    """``cancel``/``resume``: RUN_ID, or every run the filter matches."""
    filters = {name: value for name, value in filters.items() if value is not None}
    if (run_id is None) == (not filters):
        raise click.UsageError("give a RUN_ID, or a filter (--status, --sweep, --dataset-key, --model-id)")
    client = _client(ctx)
    if run_id is not None:
        return one(client, run_id)
    moved = many(client, filters)
    if as_json:
        _emit_json(_dump(moved))
        return None
    where = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(moved.moved.items()) if n)
    out.print(f"{moved.matched} run{'s' if moved.matched != 1 else ''} matched" + (f": {where}" if where else "")
              + (f"; {moved.skipped} not yours, left as they are" if moved.skipped else ""), markup=False)
    return None


@main.command()
@click.argument("run_id", required=False)
@_filter_options
@json_option
@click.pass_context
def cancel(ctx, run_id, as_json, **filters):
    """Cancel a run: a pending one at once, a running one saves a checkpoint
    and stops.  With a filter instead of RUN_ID (tunix cancel --sweep ID,
    --status pending, ...): every pending or running run it matches."""
    run = _bulk(ctx, run_id, filters, lambda client, run_id: client.cancel(run_id),
                lambda client, given: client.cancel_matching(**given), as_json)
    if run is None:
        return
    if as_json:
        _emit_json(_dump(run))
    else:
        out.print(f"run {run.run_id} {run.status.replace('_', ' ')}")


@main.command()
@click.argument("run_id", required=False)
@_filter_options
@json_option
@click.pass_context
def resume(ctx, run_id, as_json, **filters):
    """Queue a failed, cancelled or timed-out run again, from its latest
    checkpoint.  With a filter instead of RUN_ID (tunix resume --sweep ID,
    --status failed, ...): every such run it matches."""
    run = _bulk(ctx, run_id, filters, lambda client, run_id: client.resume(run_id),
                lambda client, given: client.resume_matching(**given), as_json)
    if run is None:
        return
    if as_json:
        _emit_json(_dump(run))
    else:
        out.print(f"run {run.run_id} {run.status} (attempt {run.attempts + 1} next)")


@main.command()
@click.argument("run_id")
@click.option("--csv", "as_csv", is_flag=True, help="The API's CSV (every recorded figure, method metrics too).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write there instead of stdout.")
@json_option
@click.pass_context
def metrics(ctx, run_id, as_csv, output, as_json):
    """A run's recorded steps: loss, eval loss, learning rate, gradient norm."""
    if as_csv and as_json:
        raise click.UsageError("--csv and --json are exclusive")
    if output is not None and not (as_csv or as_json):
        raise click.UsageError("-o writes --csv or --json")
    client = _client(ctx)
    if as_csv:
        text = client.metrics_csv(run_id)
    elif as_json:
        text = json.dumps([_dump(p) for p in client.metrics(run_id)], indent=2, sort_keys=True) + "\n"
    else:
        points = client.metrics(run_id)
        if not points:
            out.print("no recorded step")
            return
        number = lambda v, f=".4f": "-" if v is None else format(v, f)  # noqa: E731
        _table(("step", "attempt", "loss", "eval_loss", "learning_rate", "grad_norm"),
               [(str(p.step), str(p.attempt), number(p.loss), number(p.eval_loss), number(p.learning_rate, ".3g"),
                 number(p.grad_norm)) for p in points])
        return
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        err.print(f"{output}: {len(text.encode())} bytes", markup=False)


def _age(seconds):
    return "-" if seconds is None else f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


@main.command()
@json_option
@click.pass_context
def workers(ctx, as_json):
    """The fleet: every worker process (alive or lost, its last heartbeat,
    the runs it holds) and each queue (depth, deferred, in flight, running)."""
    fleet = _client(ctx).fleet()
    if as_json:
        _emit_json(fleet)
        return
    rows = []
    for host in fleet["hosts"]:
        for worker in host["workers"]:
            held = " ".join(f"{r['run_id'][:8]}" + (f"@{r['step']}" if r.get("step") is not None else "")
                            for r in worker["runs"]) or "-"
            rows.append((worker["worker_id"], worker["state"], _age(worker["heartbeat_age_s"]), held))
    if rows:
        _table(("worker", "state", "heartbeat", "runs"), rows)
    else:
        out.print(f"no worker has beaten in the last {fleet['lost_window_s'] / 3600:g}h", markup=False)
    # The queue figures by the API's names (QueueStats in app/fleet.py), in the table's order.
    figures = ("depth", "deferred", "in_flight", "running")  # not a run status: the fleet's field names
    _table(("queue", "kind", *(name.replace("_", " ") for name in figures), "oldest pending"),
           [(q["queue"], q["kind"], *(str(q[name]) for name in figures), _age(q["oldest_pending_age_s"]))
            for q in fleet["queues"]])
    t = fleet["totals"]
    out.print(f"{t['hosts']} hosts, {t['workers']} workers ({t['alive']} alive, {t['lost']} lost), "
              f"{t['runs_held']} runs held, {t['depth']} queued, {t[figures[1]]} deferred", markup=False)


@main.command()
@click.argument("shell", type=click.Choice(["bash", "fish", "zsh"]))
@click.pass_context
def completion(ctx, shell):
    """Print the shell completion script for SHELL (click's): for bash,
    eval "$(tunix completion bash)" in ~/.bashrc (zsh: ~/.zshrc; fish:
    tunix completion fish > ~/.config/fish/completions/tunix.fish)."""
    root = ctx.find_root()
    name = root.info_name or "tunix"
    complete_var = "_{}_COMPLETE".format(re.sub(r"\W", "_", name).upper())
    cls = click.shell_completion.get_completion_class(shell)
    click.echo(cls(root.command, {}, name, complete_var).source())


@main.command()
@click.argument("run_id")
@json_option
@click.pass_context
def checkpoints(ctx, run_id, as_json):
    """A run's recorded checkpoints."""
    listed = _client(ctx).checkpoints(run_id)
    if as_json:
        _emit_json([_dump(c) for c in listed])
        return
    if not listed:
        out.print("no recorded checkpoint")
        return
    _table(("step", "attempt", "bytes", "loss", "sha256", "recorded"),
           [(str(c.step), str(c.attempt), str(c.size_bytes), "-" if c.loss is None else f"{c.loss:.4f}",
             c.sha256, str(c.created_at)[:19]) for c in listed])


@main.command()
@click.argument("run_id")
@click.argument("step", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Default: <run>-step-<step>.tar")
@json_option
@click.pass_context
def download(ctx, run_id, step, output, as_json):
    """Download a recorded checkpoint (a tar), checking its size and sha256."""
    path = output or f"{run_id}-step-{step}.tar"
    client = _client(ctx)
    if as_json or not err.is_terminal:
        size = client.download(run_id, step, path)
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} B"),
                      TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task(f"step {step}", total=None)
            size = client.download(run_id, step, path,
                                   on_chunk=lambda done, total: bar.update(task, completed=done, total=total or None))
    if as_json:
        _emit_json({"path": path, "size_bytes": size})
    else:
        out.print(f"{path}: {size} bytes, size and sha256 checked")


@main.command()
@click.argument("run_id", required=False)
@click.argument("prompts", nargs=-1)
@click.option("--model", "model_id", help="Sample this base model instead of a run (then give no RUN_ID).")
@click.option("--step", type=int, help="A recorded checkpoint step (default: the run's latest).")
@click.option("--max-new-tokens", type=int, help="Tokens generated per prompt, at most (default 64).")
@click.option("--temperature", type=float, help="0 (default): greedy; above 0: sampled from the seed.")
@click.option("--seed", type=int, help="Default: chosen by the API, and stored.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (exit 7).")
@json_option
@click.pass_context
def sample(ctx, run_id, prompts, model_id, step, max_new_tokens, temperature, seed, timeout, as_json):
    """Generate from a run's checkpoint: tunix sample RUN_ID "prompt" ...;
    from a base model: tunix sample --model MODEL_ID "prompt" ...  Waits
    for a worker to generate, then prints each prompt's completion."""
    if model_id is not None and run_id is not None:
        prompts, run_id = (run_id, *prompts), None  # with --model, every argument is a prompt
    if (model_id is None) == (run_id is None) or not prompts:
        raise click.UsageError("give RUN_ID and at least one prompt, or --model MODEL_ID and at least one prompt")
    client = _client(ctx)
    asked = client.sample(prompts, run_id=run_id, model_id=model_id, step=step, max_new_tokens=max_new_tokens,
                          temperature=temperature, seed=seed)
    try:
        done = client.wait_sample(asked.sample_id, timeout=timeout)
    except api.WaitTimeout as exc:
        raise Failure(f"sample {asked.sample_id} is still {exc.status}", EXIT["still_running"]) from None
    if as_json:
        _emit_json(_dump(done))
    elif done.status == "completed":  # not a run status: a sample's
        source = f"run {done.run_id} step {done.step}" if done.run_id else f"base model {done.model_id}"
        err.print(f"sample {done.sample_id}: {source}, temperature {done.params['temperature']:g}, "
                  f"seed {done.params['seed']}, {(done.timings or {}).get('total_s', '?')}s")
        for output in done.outputs:
            out.print(Text(f"> {output.prompt}", style="bold"))
            out.print(Text(output.text))
    if done.status != "completed":  # not a run status: a sample's
        message = (done.error or {}).get("message", "failed")  # not a run status: the words
        raise Failure(f"sample {done.sample_id} failed: {message}", FAILED)


@main.command("export")
@click.argument("run_id", required=False)
@click.option("--step", type=int, help="A recorded checkpoint step (default: the run's latest).")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Default: ./<run-id-short>-step<N>")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (exit 7).")
@click.option("--delete", "delete_id", metavar="EXPORT_ID",
              help="Instead: remove this export's tar from the server's store (no RUN_ID).")
@json_option
@click.pass_context
def export_(ctx, run_id, step, output, timeout, delete_id, as_json):
    """Take the model away: export a run's checkpoint (LoRA merged into the
    base) as a folder of Hugging Face safetensors, config.json and the
    tokenizer.  Waits for a worker to export, downloads the tar, checks its
    sha256 and extracts it into the folder.  A step exported before (and
    not deleted) is not exported again: its export is downloaded.
    With --delete EXPORT_ID, remove an export's tar from the server instead."""
    import os
    import shutil
    import tarfile
    import tempfile

    if delete_id is not None:
        if run_id is not None or step is not None or output is not None:
            raise click.UsageError("--delete EXPORT_ID takes no RUN_ID, --step nor -o")
        _delete_export(_client(ctx), delete_id, as_json)
        return
    if run_id is None:
        raise click.UsageError("missing RUN_ID (or --delete EXPORT_ID)")
    if output and os.path.exists(output) and os.listdir(output):
        raise click.UsageError(f"{output} exists and is not empty")
    client = _client(ctx)
    asked = client.export(run_id, step=step)
    if not as_json:
        if asked.reused:
            err.print(f"export {asked.export_id}: run {asked.run_id} step {asked.step}, reused ({asked.status}: "
                      "asked for before, not made again)")
        else:
            err.print(f"export {asked.export_id}: run {asked.run_id} step {asked.step}, waiting for a worker")
    try:
        done = client.wait_export(asked.export_id, timeout=timeout)
    except api.WaitTimeout as exc:
        raise Failure(f"export {asked.export_id} is still {exc.status}", EXIT["still_running"]) from None
    if done.status != "completed":  # not a run status: an export's
        message = (done.error or {}).get("message", "failed")  # not a run status: the words
        raise Failure(f"export {done.export_id} failed: {message}", FAILED)
    folder = os.path.abspath(output or f"{done.run_id[:8]}-step{done.step}")
    if os.path.exists(folder) and os.listdir(folder):
        raise Failure(f"{folder} exists and is not empty; export {done.export_id} is ready: tunix export it again "
                      "with -o", EXIT["api_error"])
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".tunix-export-") as tmp:
        tar_path = os.path.join(tmp, "export.tar")
        size = client.download_export(done, tar_path)  # size and sha256 checked against the export's record
        with tarfile.open(tar_path) as tar:
            tar.extractall(os.path.join(tmp, "x"), filter="data")
        (inner,) = os.listdir(os.path.join(tmp, "x"))
        if os.path.isdir(folder):
            os.rmdir(folder)
        shutil.move(os.path.join(tmp, "x", inner), folder)
    if as_json:
        _emit_json(dict(_dump(done), folder=folder, reused=bool(asked.reused)))
        return
    verification = (done.manifest or {}).get("verification") or {}
    out.print(f"{folder}: {size} bytes (tar), sha256 {done.sha256} checked")
    if verification:
        out.print(f"loss on {verification.get('sentences')} fixed sentences: checkpoint "
                  f"{verification['loss_checkpoint']:.6f}, export {verification['loss_export']:.6f}; "
                  f"LoRA {'merged' if (done.manifest.get('lora') or {}).get('merged') else 'none'}")


def _delete_export(client, export_id, as_json):
    """``tunix export --delete``: one line, or the export as JSON."""
    deleted = client.delete_export(export_id)
    if as_json:
        _emit_json(_dump(deleted))
        return
    what = f"its {deleted.size_bytes}-byte tar removed from the store" if deleted.size_bytes is not None else "no tar"
    out.print(f"export {deleted.export_id} (run {deleted.run_id} step {deleted.step}) deleted at "
              f"{deleted.deleted_at}: {what}")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@json_option
@click.pass_context
def batch(ctx, path, as_json):
    """Submit many runs: a JSON or YAML list (or {"runs": [...]}), or JSON lines; all or none."""
    specs = _read_specs(path)
    runs = _client(ctx).submit_batch(specs)
    if as_json:
        _emit_json([_dump(r) for r in runs])
    else:
        for run in runs:
            click.echo(run.run_id)


def _read_specs(path):
    if path.endswith(".jsonl"):
        try:
            text = open(path, encoding="utf-8").read()
            specs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"{path}: {exc}", param_hint="PATH") from None
    else:
        specs = load_document(path)
        if isinstance(specs, dict) and "runs" in specs:
            specs = specs["runs"]
    if not isinstance(specs, list) or not specs:
        raise click.BadParameter(f"{path}: expected a non-empty list of run requests", param_hint="PATH")
    return specs


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


@main.group(cls=_Group, invoke_without_command=True)
@click.option("-f", "--file", "file_", type=click.Path(dir_okay=False, exists=True),
              help="Submit the sweep in this file (JSON or YAML): tunix sweep submit FILE.")
@json_option
@click.pass_context
def sweep(ctx, file_, as_json):
    """Sweeps: a grid and/or random search over a run request.  tunix
    sweep -f sweep.yaml submits one (as tunix sweep submit sweep.yaml)."""
    if ctx.invoked_subcommand is not None:
        if file_ is not None or as_json:
            raise click.UsageError("-f FILE submits a sweep: give it without a command (or to submit)")
        return
    if file_ is None:
        raise click.UsageError("give a command (submit, status, list, cancel, resume) or -f FILE")
    try:  # a group's callback: _Command.invoke does not turn the client's exceptions into one line here
        ctx.invoke(sweep_submit, path=file_, file_=None, as_json=as_json)
    except (api.ApiError, api.Unreachable) as exc:
        raise _api_failure(exc) from None


@sweep.command(name="submit")
@click.argument("path", type=click.Path(dir_okay=False, exists=True), required=False)
@click.option("-f", "--file", "file_", type=click.Path(dir_okay=False, exists=True), help="The same as PATH.")
@json_option
@click.pass_context
def sweep_submit(ctx, path, file_, as_json):
    """Submit the sweep in PATH (JSON, or YAML: .yaml, .yml; name, base,
    grid, random, metric, early_stopping...); prints its id."""
    if (path is None) == (file_ is None):
        raise click.UsageError("give the sweep file once: PATH or -f PATH")
    spec = load_document(path or file_)
    created = _client(ctx).submit_sweep(spec)
    if as_json:
        _emit_json(_dump(created))
        return
    click.echo(created.sweep_id)
    err.print(f"{created.trials} trials queued" + (f", {created.duplicates} duplicates not created"
                                                   if created.duplicates else ""))
    for warning in created.warnings:
        err.print(f"warning: {warning}")


@sweep.command(name="status")
@click.argument("sweep_id")
@json_option
@click.pass_context
def sweep_status(ctx, sweep_id, as_json):
    """A sweep's counts, best trial and every trial, best first."""
    detail = _client(ctx).sweep(sweep_id)
    if as_json:
        _emit_json(_dump(detail))
        return
    counts = ", ".join(f"{n} {status}" for status, n in sorted(detail.counts.items()))
    err.print(Text(f"{detail.name}: {detail.status}, {detail.trials} trials ({counts})"))
    metric, sign = detail.metric, -1 if detail.mode == "max" else 1
    value = lambda t: getattr(t, metric, None)  # noqa: E731 - a method metric is an extra key of the trial
    if detail.best is not None and value(detail.best) is not None:
        err.print(Text(f"best: {detail.best.run_id} {metric} {value(detail.best):.4f} "
                       f"({'highest' if sign < 0 else 'lowest'}) {json.dumps(detail.best.params)}"))
    if detail.early_stopped:
        err.print(Text(f"early stopped: {detail.early_stopped} trials, {detail.steps_saved} steps saved"))
    ranked = sorted(detail.runs, key=lambda t: (value(t) is None, sign * value(t) if value(t) is not None else 0))
    _table(["run", "status", "step", metric, "params"],
           [[t.run_id, t.status, "-" if t.step is None else str(t.step),
             "-" if value(t) is None else f"{value(t):.4f}" + (" (stopped early)" if t.stop_reason else ""),
             json.dumps(t.params, sort_keys=True)] for t in ranked])


@sweep.command(name="list")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@json_option
@click.pass_context
def sweep_list(ctx, limit, offset, as_json):
    """Sweeps, newest first."""
    page = _client(ctx).sweeps(limit=limit, offset=offset)
    if as_json:
        _emit_json(_dump(page))
        return
    _table(["sweep", "name", "status", "trials", "counts"],
           [[s.sweep_id, s.name, s.status, str(s.trials),
             ", ".join(f"{n} {status}" for status, n in sorted(s.counts.items()))] for s in page.data])


@sweep.command(name="cancel")
@click.argument("sweep_id")
@json_option
@click.pass_context
def sweep_cancel(ctx, sweep_id, as_json):
    """Stop every trial still pending or running."""
    _print_sweep(_client(ctx).cancel_sweep(sweep_id), as_json)


@sweep.command(name="resume")
@click.argument("sweep_id")
@json_option
@click.pass_context
def sweep_resume(ctx, sweep_id, as_json):
    """Queue every failed, cancelled or timed-out trial again."""
    _print_sweep(_client(ctx).resume_sweep(sweep_id), as_json)


def _print_sweep(detail, as_json):
    if as_json:
        _emit_json(_dump(detail))
    else:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(detail.counts.items()))
        click.echo(f"{detail.sweep_id} {detail.status} ({counts})")


# Login, users, tokens and the audit trail: their own module, on this group.
from . import accounts  # noqa: E402,F401
