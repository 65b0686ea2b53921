"""Alembic environment: runs against the engine relo hands over (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from release_orchestrator.storage.tables import Base

target_metadata = Base.metadata
engine = context.config.attributes.get("engine")

if engine is None:  # `alembic` command line: build from RELO_DATABASE_URL
    from sqlalchemy import create_engine

    from release_orchestrator.settings import Settings

    engine = create_engine(Settings().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
