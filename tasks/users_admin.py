"""``tunix-admin``: users and tokens from the server side, where the first
admin is made (the API needs a token to make one; this needs the database).

    tunix-admin create-user NAME [--role admin|member|viewer] [--expires-in-days N]
    tunix-admin token NAME [--label TEXT] [--expires-in-days N]
    tunix-admin users
    tunix-admin revoke TOKEN_ID
    tunix-admin disable NAME | enable NAME

A made token is printed once, on stdout alone (``TOKEN=$(tunix-admin ...)``);
everything else goes to stderr.  Each change is in the audit trail as
``tunix-admin.<command>``, by ``os:<login>``.  Uses ``DATABASE_URL`` and
applies no migration (``tunix-migrate`` does).  Exit 0 done, 1 refused (a
taken name, an unknown user), 2 bad usage or no database.
"""

import argparse
import datetime
import getpass
import re
import sys
import uuid

from . import db, registry
from .errors import DatabaseUnavailable
from .settings import settings_at_start
from .user_spec import MAX_TOKEN_DAYS, NAME_PATTERN, ROLES


def _name(raw):
    if not re.match(NAME_PATTERN, raw):
        raise argparse.ArgumentTypeError(f"{raw!r}: lower-case letters, digits, '.', '_' and '-', 1 to 63, "
                                         "starting with a letter or digit")
    return raw


def _days(raw):
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise argparse.ArgumentTypeError(f"{raw!r}: a whole number of days from 1 to {MAX_TOKEN_DAYS}")
    return days


def _expires(days):
    return None if days is None else datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)


def parser():
    p = argparse.ArgumentParser(prog="tunix-admin", description="Users and tokens, from the server side.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create-user", help="make a user and print their first token")
    c.add_argument("name", type=_name)
    c.add_argument("--role", choices=ROLES, default="admin")
    c.add_argument("--expires-in-days", type=_days)
    t = sub.add_parser("token", help="make another token for a user and print it")
    t.add_argument("name", type=_name)
    t.add_argument("--label", default="")
    t.add_argument("--expires-in-days", type=_days)
    sub.add_parser("users", help="list users")
    r = sub.add_parser("revoke", help="revoke a token by its id")
    r.add_argument("token_id", type=uuid.UUID)
    for verb in ("disable", "enable"):
        sub.add_parser(verb, help=f"{verb} a user").add_argument("name", type=_name)
    return p


def _audit(conn, command, user=None, detail=None):
    registry.record_audit(conn, dict(user_name=f"os:{getpass.getuser()}", role=None, token_id=None,
                                     action=f"tunix-admin.{command}", method="CLI", path=user or "-", run_ids=[],
                                     status=0, remote_addr=None, detail=detail))


def run(args, conn):
    """The command on ``conn`` (one transaction); its exit status."""
    who = f"os:{getpass.getuser()}"
    if args.command == "create-user":
        if registry.create_user(conn, args.name, args.role, created_by=who) is None:
            print(f"tunix-admin: a user named {args.name!r} exists", file=sys.stderr)
            return 1
        token, row = registry.create_token(conn, args.name, label="first", created_by=who,
                                           expires_at=_expires(args.expires_in_days))
        _audit(conn, "create-user", args.name, {"role": args.role, "token_id": str(row["id"])})
        print(f"user {args.name} ({args.role}) made; their token (shown once):", file=sys.stderr)
        print(token)
    elif args.command == "token":
        user = registry.get_user(conn, args.name)
        if user is None or user["disabled_at"] is not None:
            print(f"tunix-admin: no enabled user {args.name!r}", file=sys.stderr)
            return 1
        token, row = registry.create_token(conn, args.name, label=args.label, created_by=who,
                                           expires_at=_expires(args.expires_in_days))
        _audit(conn, "token", args.name, {"token_id": str(row["id"])})
        print(f"a token for {args.name} (shown once; id {row['id']}):", file=sys.stderr)
        print(token)
    elif args.command == "users":
        for u in registry.list_users(conn):
            state = "disabled" if u["disabled_at"] else f"{u['live_tokens']} live token(s)"
            print(f"{u['name']}\t{u['role']}\t{state}")
    elif args.command == "revoke":
        row = registry.revoke_token(conn, args.token_id)
        if row is None:
            print(f"tunix-admin: no token {args.token_id}", file=sys.stderr)
            return 1
        _audit(conn, "revoke", row["user_name"], {"token_id": str(row["id"])})
        print(f"token {row['id']} of {row['user_name']} revoked", file=sys.stderr)
    else:
        row = registry.update_user(conn, args.name, disabled=args.command == "disable")
        if row is None:
            print(f"tunix-admin: no user {args.name!r}", file=sys.stderr)
            return 1
        _audit(conn, args.command, args.name)
        print(f"user {args.name} {args.command}d", file=sys.stderr)
    return 0


def main(argv=None):
    args = parser().parse_args(argv)
    url = settings_at_start().database_url
    if not url:
        print("tunix-admin: DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        conn = db.connect(url, application_name="tunix-admin")
    except Exception as exc:  # noqa: BLE001 - any connect failure is the same answer
        print(f"tunix-admin: cannot reach the database: {exc}".strip(), file=sys.stderr)
        return 2
    try:
        with conn:
            return run(args, conn)
    except DatabaseUnavailable as exc:
        print(f"tunix-admin: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
