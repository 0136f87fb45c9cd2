"""Users and their API keys (stored as SHA-256 digests; a key is shown once, at creation)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from ingest.db.rows import one

KEY_PREFIX = "ik_"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    is_admin: bool


def ensure_user(conn: psycopg.Connection, name: str, *, is_admin: bool = False) -> User:
    name = name.strip()
    if not name:
        raise ValueError("user name must not be empty")
    row = one(
        conn.execute(
            "INSERT INTO users (name, is_admin) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET is_admin = users.is_admin OR EXCLUDED.is_admin"
            " RETURNING id, name, is_admin",
            (name, is_admin),
        )
    )
    return User(*row)


def hash_key(key: str) -> bytes:
    # Keys are 256-bit random, so a fast unsalted digest is safe: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).digest()


def create_key(conn: psycopg.Connection, user: User) -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (user_id, key_hash, prefix) VALUES (%s, %s, %s)",
        (user.id, hash_key(key), key[:8]),
    )
    return key


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is known of a key once shown: its id, owner, first characters, and dates; never the key."""

    id: int
    user: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def list_keys(conn: psycopg.Connection, *, user: str | None = None) -> list[KeyInfo]:
    return [
        KeyInfo(*row)
        for row in conn.execute(
            "SELECT k.id, u.name, k.prefix, k.created_at, k.revoked_at FROM api_keys k"
            " JOIN users u ON u.id = k.user_id WHERE %(user)s::text IS NULL OR u.name = %(user)s ORDER BY k.id",
            {"user": user},
        ).fetchall()
    ]


def revoke_key(conn: psycopg.Connection, key_id: int) -> KeyInfo | None:
    """Revoke a key now (it is refused from its next request); None if there is no such key."""
    conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (key_id,))
    row = conn.execute(
        "SELECT k.id, u.name, k.prefix, k.created_at, k.revoked_at FROM api_keys k"
        " JOIN users u ON u.id = k.user_id WHERE k.id = %s",
        (key_id,),
    ).fetchone()
    return KeyInfo(*row) if row else None


def user_for_key(conn: psycopg.Connection, key: str) -> User | None:
    row = conn.execute(
        "SELECT u.id, u.name, u.is_admin FROM api_keys k JOIN users u ON u.id = k.user_id"
        " WHERE k.key_hash = %s AND k.revoked_at IS NULL",
        (hash_key(key),),
    ).fetchone()
    return User(*row) if row else None
