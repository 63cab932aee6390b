"""Share links in the database: one unguessable token per project, which publishes its model.

The token is kept as it is (not hashed) so that the owner's page can show the link again; it
grants only what the link shows anyway, a read-only copy of the current model.
"""

from __future__ import annotations

import secrets
import time

from app.service.database import Database

SHARE_TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters


class ShareTable(Database):
    """The shares table: publish, look up and revoke a project's share link."""

    def share_project(self, project_id: str) -> str:
        """The project's share token, made now unless the project is already shared."""
        with self._db(write=True) as db:
            db.execute(
                "INSERT OR IGNORE INTO shares (project_id, token, created_at) VALUES (?, ?, ?)",
                (project_id, secrets.token_urlsafe(SHARE_TOKEN_BYTES), time.time()),
            )
            row = db.execute(
                "SELECT token FROM shares WHERE project_id = ?", (project_id,)
            ).fetchone()
        return str(row["token"])

    def share_token(self, project_id: str) -> str | None:
        with self._db() as db:
            row = db.execute(
                "SELECT token FROM shares WHERE project_id = ?", (project_id,)
            ).fetchone()
        return str(row["token"]) if row else None

    def shared_project(self, token: str) -> str | None:
        """The id of the project a share token publishes, or None for a revoked or made-up one."""
        with self._db() as db:
            row = db.execute("SELECT project_id FROM shares WHERE token = ?", (token,)).fetchone()
        return str(row["project_id"]) if row else None

    def unshare_project(self, project_id: str) -> None:
        with self._db(write=True) as db:
            db.execute("DELETE FROM shares WHERE project_id = ?", (project_id,))
