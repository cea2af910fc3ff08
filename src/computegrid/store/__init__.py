"""Persistence: SQLAlchemy 2 models, engine set-up and the Alembic migration chain."""
