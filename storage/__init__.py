"""Persistence: the only package that speaks SQL.

SQLite (WAL, one writer) is the embedded default; PostgreSQL is the
production database. Both are driven through SQLAlchemy Core with async
drivers (aiosqlite, asyncpg) and migrated by Alembic.
"""
