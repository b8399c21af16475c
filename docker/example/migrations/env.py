"""Alembic environment: the database URL comes from the DATABASE_URL environment variable."""
import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = None


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        sys.exit("alembic env.py: DATABASE_URL is not set (expected postgresql://user:pass@host:port/db)")
    # SQLAlchemy 1.4 no longer accepts the "postgres://" scheme used by many hosting providers.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    return url


def run_migrations_online() -> None:
    # The URL is passed to create_engine directly (not via config.set_main_option)
    # because ConfigParser would choke on percent-encoded characters in passwords.
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("alembic env.py: offline (--sql) mode is not supported by this project")
run_migrations_online()
