"""API tokens: created once, shown once, stored as SHA-256 digests with a role and an expiry.

A token is 32 random bytes (URL-safe text), so a plain digest is enough: there is nothing to
guess. Roles are ordered: a viewer reads aggregates, an operator also reads members, plans and
exports, an admin also writes and manages tokens.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
import secrets
from dataclasses import dataclass

import pandas as pd

from userstrata.errors import InputError, NotFoundError

__all__ = ["ROLES", "Token", "create_token", "list_tokens", "revoke_token", "verify_token"]

ROLES = ("viewer", "operator", "admin")
TABLE = "api_tokens"
_PREFIX = "us_"  # recognisable in logs and secret scanners


@dataclass(frozen=True)
class Token:
    token_id: str
    role: str
    expires_at: dt_.datetime | None

    def allows(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _ensure(raw) -> None:
    raw.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (token_id VARCHAR PRIMARY KEY, digest VARCHAR UNIQUE, role VARCHAR, "
        "note VARCHAR, created_at TIMESTAMP, expires_at TIMESTAMP, revoked_at TIMESTAMP)"
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> dt_.datetime:
    return dt_.datetime.now(dt_.UTC).replace(tzinfo=None)


def create_token(store, role: str, *, expires_days: int | None = None, note: str = "") -> tuple[str, Token]:
    """A new token of ``role``; returns ``(secret, token)``. The secret is not stored: show it once."""
    if role not in ROLES:
        raise InputError(f"--role {role!r}: use one of {', '.join(ROLES)}",
                         zh=f"--role {role!r}：可选 {', '.join(ROLES)}")
    if expires_days is not None and expires_days < 1:
        raise InputError(f"--expires {expires_days}: a token must live at least 1 day",
                         zh=f"--expires {expires_days}：令牌有效期至少 1 天")
    secret = _PREFIX + secrets.token_urlsafe(32)
    token_id = secrets.token_hex(4)
    expires = _now() + dt_.timedelta(days=expires_days) if expires_days else None
    with store.transaction() as raw:
        _ensure(raw)
        raw.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    [token_id, _digest(secret), role, note, _now(), expires])
    return secret, Token(token_id, role, expires)


def list_tokens(store) -> pd.DataFrame:
    """Every token without its secret: id, role, note, created, expires, revoked."""
    raw = store.duckdb
    _ensure(raw)
    return raw.execute(f"SELECT token_id, role, note, created_at, expires_at, revoked_at FROM {TABLE} "
                       "ORDER BY created_at").fetchdf()


def revoke_token(store, token_id: str) -> None:
    with store.transaction() as raw:
        _ensure(raw)
        found = raw.execute(f"SELECT count(*) FROM {TABLE} WHERE token_id = ? AND revoked_at IS NULL",
                            [token_id]).fetchone()[0]
        if not found:
            raise NotFoundError(f"no active token {token_id!r}", hint="`userstrata token list` shows them",
                                zh=f"没有有效的令牌 {token_id!r}", hint_zh="用 `userstrata token list` 查看")
        raw.execute(f"UPDATE {TABLE} SET revoked_at = ? WHERE token_id = ?", [_now(), token_id])


def verify_token(store, secret: str) -> Token | None:
    """The token of ``secret`` if it exists, is not revoked and has not expired; else None."""
    raw = store.duckdb.cursor()  # a cursor per call: requests run on several threads
    try:
        _ensure(raw)
        row = raw.execute(f"SELECT token_id, role, expires_at, revoked_at FROM {TABLE} WHERE digest = ?",
                          [_digest(secret)]).fetchone()
    finally:
        raw.close()
    if row is None or row[3] is not None or (row[2] is not None and row[2] <= _now()):
        return None
    return Token(row[0], row[1], row[2])
