"""Share links in the database: one unguessable token per project, which publishes its model.

The token is kept as it is (not hashed) so that the owner's page can show the link again; it
grants only what the link shows anyway, a read-only copy of the current model.
"""

from __future__ import annotations

import secrets
import time

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from app.service.database import Database
from app.service.tables import shares

SHARE_TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters


class ShareTable(Database):
    """The shares table: publish, look up and revoke a project's share link."""

    def share_project(self, project_id: str) -> str:
        """The project's share token, made now unless the project is already shared."""
        dialect = postgresql if self.postgres else sqlite
        with self._db(write=True) as db:
            db.execute(
                dialect.insert(shares)
                .values(
                    project_id=project_id,
                    token=secrets.token_urlsafe(SHARE_TOKEN_BYTES),
                    created_at=time.time(),
                )
                .on_conflict_do_nothing(index_elements=[shares.c.project_id])
            )
            token = db.execute(
                select(shares.c.token).where(shares.c.project_id == project_id)
            ).scalar_one()
        return str(token)

    def share_token(self, project_id: str) -> str | None:
        with self._db() as db:
            token = db.execute(
                select(shares.c.token).where(shares.c.project_id == project_id)
            ).scalar_one_or_none()
        return str(token) if token is not None else None

    def shared_project(self, token: str) -> str | None:
        """The id of the project a share token publishes, or None for a revoked or made-up one."""
        with self._db() as db:
            project_id = db.execute(
                select(shares.c.project_id).where(shares.c.token == token)
            ).scalar_one_or_none()
        return str(project_id) if project_id is not None else None

    def unshare_project(self, project_id: str) -> None:
        with self._db(write=True) as db:
            db.execute(delete(shares).where(shares.c.project_id == project_id))
