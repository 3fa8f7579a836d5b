"""Direct identifiers (phone numbers, e-mail addresses) stored only as salted hashes.

At load time, unless ``keep_pii`` is given:

- ``identities.external_id`` is hashed where ``source`` is a direct identifier
  (``[identity] pii_sources``: phone, mobile, email, 手机号);
- in ``users.attributes`` the values under the keys of ``[identity] pii_keys`` (phone, mobile,
  email, 手机号...) are hashed;
- rejected rows of those tables (kept whole in ``rejects`` so that nothing is lost) have every
  phone number and e-mail address in them hashed too.

A hash is ``HMAC-SHA256(salt, normalised value)`` in hex. Phones are normalised first
(full-width digits, spaces, dashes, brackets and a +86/0086 prefix dropped), e-mail addresses
lower-cased, so that ``+86 138-0013-8000`` and ``13800138000`` give the same hash and still link
one user. The salt is 32 random bytes made the first time it is needed and kept in the workspace
(table ``workspace_secrets``): the same phone hashes alike within one workspace, and a copy of
the hashes without the workspace cannot be reversed by hashing every phone number.

References
----------
Krawczyk, Bellare & Canetti (1997), RFC 2104: HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from collections.abc import Iterable

import pyarrow as pa

from userstrata.ingest.mapping import normalise as normalise_name

SECRETS_TABLE = "workspace_secrets"
_SALT_NAME = "pii_salt"
# SQL functions registered on the load's DuckDB connection (see ``register``)
HASH_FUNCTION = "us_pii_hash"  # (value) -> hash of a phone or e-mail (kind guessed from the value)
JSON_FUNCTION = "us_pii_json"  # (json object text) -> the object with its PII keys hashed
SCRUB_FUNCTION = "us_pii_scrub"  # (any text) -> every phone number / e-mail in it hashed

_HEX64 = re.compile(r"[0-9a-f]{64}")
_PHONE_NOISE = re.compile(r"[\s\-().·/]+")
# a mainland mobile number, optionally with +86 / 0086 / 86 and separators, not inside a longer number
_PHONE_IN_TEXT = re.compile(r"(?<![\d])(?:(?:\+|00)?86[\s\-]?)?1[3-9]\d(?:[\s\-]?\d){8}(?![\d])")
_EMAIL_IN_TEXT = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")


def normalise_phone(value: str) -> str:
    """'+86 138-0013-8000' -> '13800138000'; other numbers keep their digits (and a leading +)."""
    text = unicodedata.normalize("NFKC", value).strip()
    plus = text.startswith("+")
    digits = _PHONE_NOISE.sub("", text).lstrip("+")
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11 and digits[len(prefix)] == "1":
            return digits[len(prefix):]
    return ("+" if plus and not digits.startswith("1") else "") + digits


def normalise_identifier(value: str) -> str:
    """An e-mail address lower-cased and trimmed; anything else normalised as a phone number."""
    text = unicodedata.normalize("NFKC", value).strip()
    if "@" in text:
        return text.lower()
    return normalise_phone(text)


def hash_identifier(salt: bytes, value: str | None) -> str | None:
    """HMAC-SHA256 of the normalised ``value`` in hex; a value that already is such a hash
    (64 lower-case hex digits: a file exported from a workspace) is kept, so hashing twice
    changes nothing."""
    if value is None:
        return None
    if _HEX64.fullmatch(value):
        return value
    return hmac.new(salt, normalise_identifier(value).encode("utf-8"), hashlib.sha256).hexdigest()


def workspace_salt(raw) -> bytes:
    """The workspace's salt (raw DuckDB connection), made and stored on first need."""
    raw.execute(f"CREATE TABLE IF NOT EXISTS {SECRETS_TABLE} (name VARCHAR PRIMARY KEY, value VARCHAR)")
    found = raw.execute(f"SELECT value FROM {SECRETS_TABLE} WHERE name = ?", [_SALT_NAME]).fetchone()
    if found:
        return bytes.fromhex(found[0])
    salt = secrets.token_bytes(32)
    raw.execute(f"INSERT INTO {SECRETS_TABLE} VALUES (?, ?) ON CONFLICT DO NOTHING", [_SALT_NAME, salt.hex()])
    # a concurrent first load may have won: read back what is stored
    return bytes.fromhex(raw.execute(f"SELECT value FROM {SECRETS_TABLE} WHERE name = ?", [_SALT_NAME]).fetchone()[0])


def _hash_json(salt: bytes, keys: frozenset[str], text: str | None) -> str | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return scrub_text(salt, text)
    if not isinstance(data, dict):
        return scrub_text(salt, text)
    changed = False
    for key, value in data.items():
        if normalise_name(key) in keys and value is not None:
            data[key] = hash_identifier(salt, str(value))
            changed = True
        elif isinstance(value, str) and (_PHONE_IN_TEXT.search(value) or _EMAIL_IN_TEXT.search(value)):
            data[key] = scrub_text(salt, value)
            changed = True
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) if changed else text


def scrub_text(salt: bytes, text: str | None) -> str | None:
    """``text`` with every mainland mobile number and e-mail address in it replaced by its hash."""
    if text is None:
        return None
    text = _PHONE_IN_TEXT.sub(lambda m: hash_identifier(salt, m.group(0)), text)
    return _EMAIL_IN_TEXT.sub(lambda m: hash_identifier(salt, m.group(0)), text)


def _arrow_udf(fn):
    def run(column: pa.Array) -> pa.Array:
        return pa.array([fn(v) for v in column.to_pylist()], pa.string())

    return run


def register(raw, salt: bytes, pii_keys: Iterable[str]) -> None:
    """Register the hashing functions on the raw DuckDB connection (for one load)."""
    keys = frozenset(normalise_name(k) for k in pii_keys)
    for name, fn in (
        (HASH_FUNCTION, lambda v: hash_identifier(salt, v)),
        (JSON_FUNCTION, lambda v: _hash_json(salt, keys, v)),
        (SCRUB_FUNCTION, lambda v: _hash_json(salt, keys, v) if v and v.startswith("{") else scrub_text(salt, v)),
    ):
        _unregister(raw, name)
        raw.create_function(name, _arrow_udf(fn), ["VARCHAR"], "VARCHAR", type="arrow", null_handling="special",
                            side_effects=False)


def _unregister(raw, name: str) -> None:
    try:
        raw.remove_function(name)
    except Exception:  # noqa: BLE001 - not registered: nothing to remove
        pass


def unregister(raw) -> None:
    for name in (HASH_FUNCTION, JSON_FUNCTION, SCRUB_FUNCTION):
        _unregister(raw, name)


def scrub_rejects(raw, rejects: str) -> None:
    """Hash every phone number and e-mail address in the staged rejects of a load."""
    raw.execute(f"""
        UPDATE {rejects} SET raw = {SCRUB_FUNCTION}(raw), value = {SCRUB_FUNCTION}(value),
            reason = {SCRUB_FUNCTION}(reason), reason_zh = {SCRUB_FUNCTION}(reason_zh)
    """)
