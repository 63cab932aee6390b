"""Every table of the metadata database as SQLAlchemy Core, the same for SQLite and PostgreSQL.

It describes what schema.py's SCHEMA and its column migrations make (tests/service/
test_db_migrations.py checks that a database made by them matches it), and it is what the first
Alembic revision creates and `teachbox db copy` copies, table by table in `metadata.sorted_tables`
order (parents before children).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

metadata = MetaData()

# SQLite compares user names without case (COLLATE NOCASE); PostgreSQL has no such collation, so
# there a unique index on lower(name) keeps "Ada" and "ada" from being two users.
_NAME = Text().with_variant(Text(collation="NOCASE"), "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", _NAME, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("admin", Integer, nullable=False, server_default=text("0")),
    Column("created_at", Float, nullable=False),
)
Index("users_by_lower_name", func.lower(users.c.name), unique=True).ddl_if(dialect="postgresql")

credentials = Table(
    "credentials",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("digest", Text, nullable=False, unique=True),
    Column("name", Text),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Index("credentials_by_user", "user_id", "kind"),
)

join_codes = Table(
    "join_codes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("digest", Text, nullable=False, unique=True),
    Column("created_by", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("uses", Integer, nullable=False, server_default=text("0")),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    # NULL for projects made without accounts, or whose owner was removed: only admins see those.
    Column("owner_id", Text, ForeignKey("users.id", ondelete="SET NULL")),
)

classes = Table(
    "classes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project_id", Text, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project_id", "name"),
)

images = Table(
    "images",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project_id", Text, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("class_id", Text, ForeignKey("classes.id", ondelete="CASCADE"), nullable=False),
    Column("filename", Text, nullable=False),
    Column("stored_name", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("images_by_class", "class_id", "created_at"),
    Index("images_by_project", "project_id"),
)

ACTIVE = ("queued", "running")

jobs = Table(
    "jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project_id", Text, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("status", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("image_count", Integer, nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("metrics", Text),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    # A comparison job, and the model a user kept from it (and when).
    Column("kind", Text, nullable=False, server_default=text("'train'")),
    Column("kept_mode", Text),
    Column("kept_at", Float),
    # Workers in other processes: who runs the job, how often it was started, the lease the
    # running worker keeps renewing, a cancel asked from any web process, and the workers lost.
    Column("worker", Text),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("lease_until", Float),
    Column("cancel_requested", Integer, nullable=False, server_default=text("0")),
    Column("lost_workers", Integer, nullable=False, server_default=text("0")),
    Index("jobs_by_project", "project_id", "created_at"),
)
_ACTIVE_SQL = text("status IN ('queued', 'running')")
Index(
    "one_active_job_per_project",
    jobs.c.project_id,
    unique=True,
    sqlite_where=_ACTIVE_SQL,
    postgresql_where=_ACTIVE_SQL,
)

shares = Table(
    "shares",
    metadata,
    Column("project_id", Text, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("token", Text, nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

job_events = Table(
    "job_events",
    metadata,
    Column("job_id", Text, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", Text, nullable=False),
    Column("data", Text, nullable=False),
    PrimaryKeyConstraint("job_id", "seq"),
)


def insertion_order(table: Table) -> tuple[Column[Any], Column[Any]]:
    """Oldest first: by creation time, then by id (random, but fixed) for rows made in the same instant.

    The SQLite-only code broke ties by rowid; PostgreSQL has none."""
    return table.c.created_at, table.c.id
