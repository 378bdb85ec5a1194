"""Apply the versioned SQL migrations in ``tasks/sql/migrations``.

Safe when several processes start at once: the first takes a transaction
advisory lock, the others wait for it and then find nothing left to do.

    python -m tasks.migrate            # uses DATABASE_URL
"""

import logging
import sys

from . import db
from .settings import settings_at_start
from .sql import migrations

logger = logging.getLogger(__name__)

#: Arbitrary constant: the advisory lock all migrating processes queue on.
MIGRATION_LOCK = 7_231_402_118

CREATE_VERSIONS = """
CREATE TABLE IF NOT EXISTS tunix_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrate(url):
    """Apply what is missing; return the names applied."""
    applied = []
    conn = db.connect(url, application_name="tunix-rt-migrate")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute(CREATE_VERSIONS)
            cur.execute("SELECT version FROM tunix_schema_migrations")
            done = {row[0] for row in cur.fetchall()}
            for version, name, sql in migrations():
                if version in done:
                    continue
                logger.info("applying migration %s", name)
                cur.execute(sql)
                cur.execute(
                    "INSERT INTO tunix_schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )
                applied.append(name)
    finally:
        conn.close()
    return applied


def pending(conn):
    """Names of migrations not applied yet on ``conn``'s database."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('tunix_schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return [name for _, name, _ in migrations()]
        cur.execute("SELECT version FROM tunix_schema_migrations")
        done = {row[0] for row in cur.fetchall()}
    return [name for version, name, _ in migrations() if version not in done]


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = settings_at_start().database_url
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    names = migrate(url)
    print(f"applied {len(names)} migration(s): {', '.join(names) or 'none needed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
