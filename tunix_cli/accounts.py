"""``tunix login``, ``logout``, ``whoami``, ``users``, ``tokens`` and ``audit``.

A token is a secret: it is read from a flag, stdin (``--token -``) or a
prompt that does not echo; it travels in the ``Authorization`` header only
(``client.py``), is kept in the profile file (``profiles.py``, 0600), and
is printed once, when it is made: alone on stdout, so
``TOKEN=$(tunix tokens create)`` takes it, with a note on stderr.  No other
output and no error message carries it.
"""

import datetime
import getpass
import os
import sys

import click
from rich.table import Table
from rich.text import Text

from tasks.user_spec import ROLES

from . import client as api
from . import profiles
from .cli import EXIT, Failure, _Group, _client, _dump, _emit_json, _table, err, json_option, main, out


def _profile_name(ctx, given):
    """``--profile`` of the command, else the group's, else ``TUNIX_PROFILE``, else ``default``."""
    name = given or ctx.find_root().obj["profile"] or os.environ.get("TUNIX_PROFILE") or profiles.DEFAULT_PROFILE
    try:
        return profiles.check_name(name)
    except profiles.ProfileError as exc:
        raise click.BadParameter(str(exc), param_hint="--profile") from None


def _load(path):
    try:
        return profiles.load(path)
    except profiles.ProfileError as exc:
        raise Failure(str(exc), EXIT["usage"]) from None


def _read_token(given, url):
    """The token: ``given``; ``-``: stdin's first line; none: asked for, not echoed."""
    if given == "-":
        token = sys.stdin.readline().strip()
    elif given is not None:
        token = given.strip()
    else:
        if not sys.stdin.isatty():
            raise click.UsageError("no terminal to ask for the token on: give --token - and pipe it in")
        token = getpass.getpass(f"Token for {url}: ").strip()
    if not token:
        raise click.UsageError("an empty token")
    if any(c.isspace() for c in token):
        raise click.UsageError("a token has no spaces in it")  # the value itself is not repeated
    return token


def _who(me):
    return f"{me.name} ({me.role})" if me.name else f"no user ({me.role}, via {me.via})"


def _short(stamp):
    return "-" if stamp is None else str(stamp)[:19].replace("T", " ")


# --------------------------------------------------------------------------- login

@main.command()
@click.option("--profile", "profile_name", help="Save as this profile (else TUNIX_PROFILE, else 'default').")
@click.option("--url", "login_url", help="The API (else TUNIX_URL, else the profile's, else the default).")
@click.option("--token", "login_token",
              help="The token; '-' reads it from stdin; default: asked for, not echoed.")
@json_option
@click.pass_context
def login(ctx, profile_name, login_url, login_token, as_json):
    """Check a token against the API (who it acts as), then save it and the
    URL as a profile in the config file (mode 0600)."""
    root = ctx.find_root().obj
    name = _profile_name(ctx, profile_name)
    path = profiles.config_path()
    saved = _load(path).get(name, {})
    url = (login_url or root["url"] or os.environ.get("TUNIX_URL") or saved.get("url")
           or api.DEFAULT_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{url!r} is not an http:// or https:// URL", param_hint="--url")
    token = _read_token(login_token if login_token is not None else root["token"], url)
    with api.Client(url, token, patience_s=root["patience"], fail_fast=True) as client:
        me = client.me()
    if me.via == "open":
        err.print(f"note: the API at {url} does not check tokens (auth: {me.auth}); saved all the same",
                  markup=False)
    profiles.save_profile(path, name, url=url, token=token, user=me.name)
    if as_json:
        _emit_json({**_dump(me), "url": url, "profile": name, "config": path})
        return
    out.print(Text(f"logged in to {url} as {_who(me)}: profile {name!r} saved in {path}"))


@main.command()
@click.option("--profile", "profile_name", help="This profile (else TUNIX_PROFILE, else 'default').")
@click.option("--revoke", is_flag=True, help="Revoke the token at the API first, so it stops everywhere.")
@click.pass_context
def logout(ctx, profile_name, revoke):
    """Forget the profile's token (its URL stays, for the next tunix login)."""
    name = _profile_name(ctx, profile_name)
    path = profiles.config_path()
    saved = _load(path).get(name, {})
    if not saved.get("token"):
        err.print(f"profile {name!r} holds no token", markup=False)
        return
    if revoke:
        with api.Client(saved.get("url") or api.DEFAULT_URL, saved["token"],
                        patience_s=ctx.find_root().obj["patience"], fail_fast=True) as client:
            try:
                me = client.me()
                if me.token_id is not None:
                    client.revoke_token(me.token_id)
                    err.print(f"token {me.token_id} revoked", markup=False)
            except api.ApiError as exc:
                if exc.status != 401:
                    raise
                err.print("the API refuses the token already (revoked, expired or its user disabled)")
    profiles.save_profile(path, name, token=None, user=None)
    out.print(Text(f"logged out: profile {name!r} holds no token now ({path})"))


@main.command()
@json_option
@click.pass_context
def whoami(ctx, as_json):
    """Who the token acts as (user and role), at which API, from which profile."""
    client = _client(ctx)
    me = client.me()
    found = ctx.find_root().obj["resolved"]
    if as_json:
        _emit_json({**_dump(me), "url": found.url, "profile": found.profile, "token_from": found.token_from})
        return
    table = Table(show_header=False, box=None)
    rows = [("user", me.name or "-"), ("role", me.role), ("url", found.url),
            ("profile", found.profile or "-"), ("token", f"{me.token_id or '-'} (from the {found.token_from})"
                                                        if found.token_from else "none"),
            ("via", me.via), ("auth", me.auth)]
    for key, value in rows:
        table.add_row(Text(key, style="bold"), Text(str(value)))
    out.print(table)


# --------------------------------------------------------------------------- users

@main.group(cls=_Group)
def users():
    """Users (admins): list, create, set-role, disable, enable."""


def _user_rows(listed):
    return [(u.name, u.role, "disabled" if u.disabled_at else "enabled", "-" if u.live_tokens is None
             else str(u.live_tokens), _short(u.created_at), u.created_by or "-") for u in listed]


def _print_user(user, as_json):
    if as_json:
        _emit_json(_dump(user))
    else:
        out.print(Text(f"user {user.name}: {user.role}, "
                       + (f"disabled since {_short(user.disabled_at)}" if user.disabled_at else "enabled")))


@users.command(name="list")
@json_option
@click.pass_context
def users_list(ctx, as_json):
    """Every user, with their live tokens."""
    listed = _client(ctx).users()
    if as_json:
        _emit_json([_dump(u) for u in listed])
        return
    _table(("user", "role", "state", "live tokens", "created", "by"), _user_rows(listed))


@users.command(name="create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Days the first token lives (default: until "
                                                                      "revoked).")
@json_option
@click.pass_context
def users_create(ctx, name, role, expires_in_days, as_json):
    """Make a user; their first token goes, alone, to stdout (shown this once)."""
    made = _client(ctx).create_user(name, role=role, token_expires_in_days=expires_in_days)
    if as_json:
        _emit_json(_dump(made))
        return
    _print_secret(made.token, f"user {made.user.name} ({made.user.role}) made; their first token")


def _print_secret(token, what):
    click.echo(token.token)
    expires = f", expires {_short(token.expires_at)}" if token.expires_at else ", no expiry"
    err.print(f"{what} (id {token.token_id}, {token.prefix}…{expires}) is on stdout: shown this once, keep it",
              markup=False)


@users.command(name="set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@json_option
@click.pass_context
def users_set_role(ctx, name, role, as_json):
    """Change a user's role."""
    _print_user(_client(ctx).update_user(name, role=role), as_json)


@users.command(name="disable")
@click.argument("name")
@json_option
@click.pass_context
def users_disable(ctx, name, as_json):
    """Disable a user: their tokens stop at once (their runs stay)."""
    _print_user(_client(ctx).update_user(name, disabled=True), as_json)


@users.command(name="enable")
@click.argument("name")
@json_option
@click.pass_context
def users_enable(ctx, name, as_json):
    """Enable a disabled user again (their live tokens work again)."""
    _print_user(_client(ctx).update_user(name, disabled=False), as_json)


# --------------------------------------------------------------------------- tokens

@main.group(cls=_Group)
def tokens():
    """API tokens: list, create, revoke (your own; an admin's, anyone's)."""


def _state(token):
    if token.revoked_at:
        return "revoked"
    if token.expires_at and datetime.datetime.fromisoformat(token.expires_at) <= datetime.datetime.now(
            datetime.timezone.utc):
        return "expired"
    return "live"


@tokens.command(name="list")
@click.option("--user", help="This user's tokens (an admin).")
@click.option("--all", "all_", is_flag=True, help="Every user's tokens (an admin).")
@json_option
@click.pass_context
def tokens_list(ctx, user, all_, as_json):
    """Tokens (never the tokens themselves: their ids and first characters)."""
    if user and all_:
        raise click.UsageError("--user and --all are exclusive")
    listed = _client(ctx).tokens("*" if all_ else user)
    if as_json:
        _emit_json([_dump(t) for t in listed])
        return
    _table(("id", "user", "label", "prefix", "state", "created", "expires", "last used"),
           [(t.token_id, t.user, t.label or "-", t.prefix, _state(t), _short(t.created_at), _short(t.expires_at),
             _short(t.last_used_at)) for t in listed])


@tokens.command(name="create")
@click.option("--label", default="", help="What the token is for (shown in listings).")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Days it lives (default: until revoked).")
@click.option("--user", help="Whose token (an admin; default: yours).")
@json_option
@click.pass_context
def tokens_create(ctx, label, expires_in_days, user, as_json):
    """Make a token; it goes, alone, to stdout (shown this once): TOKEN=$(tunix tokens create)."""
    made = _client(ctx).create_token(label=label, expires_in_days=expires_in_days, user=user)
    if as_json:
        _emit_json(_dump(made))
        return
    _print_secret(made, f"a token for {made.user}")


@tokens.command(name="revoke")
@click.argument("token_id")
@json_option
@click.pass_context
def tokens_revoke(ctx, token_id, as_json):
    """Revoke a token at once (by its id: tunix tokens list)."""
    revoked = _client(ctx).revoke_token(token_id)
    if as_json:
        _emit_json(_dump(revoked))
    else:
        out.print(Text(f"token {revoked.token_id} of {revoked.user} ({revoked.prefix}…) revoked at "
                       f"{_short(revoked.revoked_at)}"))


# --------------------------------------------------------------------------- audit

@main.command()
@click.option("--user", help="Only this user's requests.")
@click.option("--action", help="Only this action (the endpoint, e.g. runs.cancel).")
@click.option("--run", "run_id", help="Only requests that touched this run.")
@click.option("--since", help="From this time on (ISO 8601, e.g. 2026-05-01T12:00).")
@click.option("--until", help="Before this time (ISO 8601).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--before-id", type=int, help="The next page: entries older than this id.")
@json_option
@click.pass_context
def audit(ctx, user, action, run_id, since, until, limit, before_id, as_json):
    """The audit trail (admins), newest first: who did what to which run."""
    page = _client(ctx).audit(user=user, action=action, run_id=run_id, since=since, until=until, limit=limit,
                              before_id=before_id)
    if as_json:
        _emit_json(_dump(page))
        return
    _table(("id", "at", "user", "action", "status", "runs", "path"),
           [(str(e.id), _short(e.at), e.user or "-", e.action, str(e.status), ",".join(e.run_ids) or "-",
             f"{e.method} {e.path}") for e in page.data])
    if page.next_before_id is not None and len(page.data) == limit:
        err.print(f"more: --before-id {page.next_before_id}", markup=False)
