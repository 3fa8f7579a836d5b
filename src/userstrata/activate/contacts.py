"""Contact fields (联系方式) for a member list: the phone numbers and e-mail addresses an SMS or
e-mail tool sends to, where the workspace kept them.

Where they come from, per member (their stitched id):

- ``identities`` rows whose ``source`` names the field (phone: phone, mobile, 手机号...; e-mail:
  email, 邮箱), through the identity map, so a person's second account gives its number too;
- else ``users.attributes`` under the same keys.

Direct identifiers are stored as salted hashes unless the data were loaded with
``userstrata load --keep-pii`` (ingest/pii.py). A hash is no contact: hashed values are left out,
counted, and when a field has only hashes the error says how to keep them. Any other source name
(``wechat_openid``, ``unionid``) is a field of its own, taken from ``identities`` as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from userstrata.errors import InputError
from userstrata.ingest.mapping import normalise as normalise_name

__all__ = ["FIELD_NAMES", "Contacts", "contact_fields"]

# field -> the identities sources and users.attributes keys that hold it (compared folded)
FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "phone": ("phone", "mobile", "tel", "手机号", "手机", "电话", "联系电话"),
    "email": ("email", "e_mail", "mail", "邮箱"),
}
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Contacts:
    """``frame``: ``user_id`` and one column per field (empty where unknown); ``hashed``: per
    field, members whose only values were hashes."""

    frame: pd.DataFrame
    hashed: dict[str, int]


def _names(field: str) -> set[str]:
    return {normalise_name(n) for n in FIELD_NAMES.get(field, (field,))}


def _from_attributes(text: object, names: set[str]) -> str | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    for key, value in found.items():
        if normalise_name(str(key)) in names and value not in (None, ""):
            return str(value)
    return None


def contact_fields(members: Sequence[str], fields: Sequence[str], *, identities: pd.DataFrame,
                   users: pd.DataFrame, canonical: Mapping[str, str] | None = None) -> Contacts:
    """Each member's ``fields`` (e.g. ``["phone", "email"]``), from ``identities`` (``source``,
    ``external_id``, ``user_id``) and ``users`` (``user_id``, ``attributes``); ``canonical`` maps
    a raw user id to its stitched id (identity stitching), identity when absent.

    Raises
    ------
    InputError
        A field that no member has: stored only as hashes (load with ``--keep-pii``), or absent.
    """
    canonical = canonical or {}
    out = pd.DataFrame({"user_id": pd.Series(list(dict.fromkeys(members)), dtype="string")})
    wanted = set(out["user_id"])
    hashed: dict[str, int] = {}
    for field in fields:
        names = _names(field)
        ids = identities.loc[[normalise_name(str(s)) in names for s in identities["source"]]]
        ids = pd.DataFrame({"user_id": ids["user_id"].map(lambda u: canonical.get(u, u)),
                            "value": ids["external_id"].astype("string")})
        attrs = pd.DataFrame({"user_id": users["user_id"].map(lambda u: canonical.get(u, u)),
                              "value": users["attributes"].map(lambda t: _from_attributes(t, names))}).dropna()
        values = pd.concat([ids, attrs], ignore_index=True)
        values = values[values["user_id"].isin(wanted) & values["value"].notna()]
        is_hash = values["value"].str.fullmatch(_HASH).fillna(False).astype(bool)
        clear = values[~is_hash].drop_duplicates("user_id")  # identities first, then attributes
        only_hashed = set(values.loc[is_hash, "user_id"]) - set(clear["user_id"])
        hashed[field] = len(only_hashed)
        if clear.empty:
            where = (f"identities (source {', '.join(FIELD_NAMES.get(field, (field,)))}) or users.attributes")
            if only_hashed:
                raise InputError(
                    f"contact field {field!r}: the {len(only_hashed):,} members' values are stored hashed",
                    hint="direct identifiers are hashed at load time; load the users/identities again with "
                         "`userstrata load --keep-pii` to export them",
                    zh=f"联系方式 {field!r}：这 {len(only_hashed):,} 位成员的值以哈希保存，无法导出",
                    hint_zh="手机号、邮箱在导入时默认哈希；如需导出，请用 `userstrata load --keep-pii` 重新导入用户/身份表",
                )
            raise InputError(f"contact field {field!r}: no member has one in {where}",
                             hint=f"fields known: {', '.join(FIELD_NAMES)} or an identities source",
                             zh=f"联系方式 {field!r}：没有成员在 {where} 中有此项",
                             hint_zh=f"可用的字段：{', '.join(FIELD_NAMES)}，或身份表中的来源名")
        out[field] = out["user_id"].map(clear.set_index("user_id")["value"]).astype("string")
    return Contacts(out, hashed)
