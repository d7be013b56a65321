"""Create the serving replicas' database and its user on the dev overlay's PostgreSQL (the faceops-create-database Job).

Usage: python create_database.py. The database, user and password come from FACEOPS_SERVE_DATABASE_URL (the Secret
faceops-database); the server's superuser from POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB (the Secret
faceops-postgres, MLflow's). Idempotent: a missing user or database is created, an existing user gets the URL's
password again (so editing secrets/database.env and re-running the Job is how the password changes). The user owns
its database and nothing else: it cannot read MLflow's tables. Exits non-zero, naming the server, while PostgreSQL does not
answer, so the Job retries until it is up.
"""

from __future__ import annotations

import os
import sys

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict


def target(url: str) -> tuple[dict[str, str], str, str, str]:
    """The server to connect to (host, port), and the database, user and password that ``url`` names."""
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except psycopg.ProgrammingError as exc:
        raise SystemExit(f"FACEOPS_SERVE_DATABASE_URL is not a PostgreSQL URL: {exc}") from exc
    missing = [k for k in ("host", "dbname", "user", "password") if not params.get(k)]
    if missing:
        raise SystemExit(f"FACEOPS_SERVE_DATABASE_URL names no {', '.join(missing)}")
    server = {k: params[k] for k in ("host", "port") if params.get(k)}
    return server, params["dbname"], params["user"], params["password"]


def main() -> int:
    try:
        url = os.environ["FACEOPS_SERVE_DATABASE_URL"]
        admin = {k: os.environ[f"POSTGRES_{k.upper()}"] for k in ("user", "password")}
        admin_db = os.environ["POSTGRES_DB"]
    except KeyError as exc:
        raise SystemExit(f"environment variable {exc.args[0]} is not set") from exc
    server, name, user, password = target(url)
    if user == admin["user"] or name == admin_db:
        raise SystemExit(f"the serving database ({user}@{name}) must not be MLflow's ({admin['user']}@{admin_db})")
    where = f"{server['host']}:{server.get('port', 5432)}"
    try:
        with psycopg.connect(**server, **admin, dbname=admin_db, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))
            print(f"user {user} {'updated' if exists else 'created'} on {where}")
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                print(f"database {name} exists on {where}")
            else:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(user)))
                print(f"database {name} created on {where}, owned by {user}")
    except psycopg.OperationalError as exc:
        raise SystemExit(f"cannot reach PostgreSQL at {where}: {exc}") from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
