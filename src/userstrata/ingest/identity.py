"""Identity stitching (统一用户ID): linked identifiers from every system form one user.

The graph: nodes are user ids and external ids ``(source, external_id)``: a WeChat openid or
unionid, a (hashed) phone, a device id, a community account, an e-mail. Edges come from

- ``identities`` rows: ``(source, external_id)`` -- ``user_id``; with an optional column
  ``linked_source`` the row links to a second external id instead, ``(linked_source, user_id)``
  (``linked_source`` empty or ``user_id`` = a user id). A row ``(user_id, u7, u9)`` merges two
  accounts;
- events that carry both ``user_id`` and ``anonymous_id`` (a login): ``("anonymous_id",
  anonymous_id)`` -- ``user_id``, so that the visitor's earlier anonymous events count for the user.

Linked nodes form one user, transitively (openid -- unionid -- phone): connected components by
union-find over the distinct edges, in Python (the edge list is small next to events).

The cap: a node with more than ``max_links`` distinct neighbours (a phone on hundreds of
accounts is a shared device or a test account) is not merged through. Its edges are dropped and
it is listed in ``conflicts`` with its number of links; an external id over the cap maps to no
user (its events stay unattributed), a user id over the cap stays a user of its own.

The canonical ``user_id`` of a group is its smallest user id (string order), which depends only
on the set of links, never on load order. When a new link joins two known users, the smaller id
wins and the other id maps to it from then on. A group without any user id (say, two device ids
of a visitor who never logged in) has no canonical user: its ids map to null until a link to a
user arrives.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata.errors import InputError

USER = "user_id"  # the source name of user-id nodes in the mapping
ANONYMOUS = "anonymous_id"  # the source name of anonymous ids taken from events
_LARGEST = 10


@dataclass(frozen=True)
class IdentityMap:
    """The result of ``stitch``.

    Attributes
    ----------
    mapping
        One row per id that is merged: ``source`` (``user_id`` for user ids), ``external_id``,
        ``user_id`` (the canonical id, null for a group without a user id) and ``group_id`` (the
        smallest member ``source:external_id``, naming groups with or without a user id).
        Sorted by source and id.
    summary
        ``source_ids`` (distinct external ids merged), ``user_ids`` (distinct user ids seen),
        ``users`` (canonical users: groups with a user id), ``merged_user_ids`` (user ids that
        map to another, smaller one), ``unlinked_ids`` (external ids in groups without a user
        id), ``links`` (distinct edges), ``conflicts`` (ids over the cap), ``max_links``.
    largest
        The largest groups: ``group_id``, ``user_id``, ``members``, ``user_ids`` and ``sources``
        ("phone 2, wechat_openid 1"), biggest first.
    conflicts
        Ids over the cap: ``source``, ``external_id``, ``links`` (distinct neighbours),
        ``examples`` (the first five, in order), most links first.
    """

    mapping: pd.DataFrame
    summary: dict[str, int]
    largest: pd.DataFrame
    conflicts: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary_text(self, lang: str = "en") -> str:
        """One line for people."""
        s = self.summary
        if lang == "zh":
            return (f"{s['source_ids']:,} 个外部 ID 与 {s['user_ids']:,} 个用户 ID 合并为 {s['users']:,} 个用户"
                    f"（{s['merged_user_ids']:,} 个用户 ID 并入其他用户）；{s['unlinked_ids']:,} 个外部 ID 尚未关联到用户；"
                    f"{s['conflicts']:,} 个 ID 关联超过 {s['max_links']} 个，未合并")
        return (f"{s['source_ids']:,} external ids and {s['user_ids']:,} user ids merged into {s['users']:,} users "
                f"({s['merged_user_ids']:,} user ids folded into another); {s['unlinked_ids']:,} external ids not "
                f"linked to a user yet; {s['conflicts']:,} ids with more than {s['max_links']} links not merged")


def event_links(events: ir.Table) -> ir.Table:
    """Distinct ``(source='anonymous_id', external_id=anonymous_id, user_id)`` of events that carry both ids."""
    both = events.filter(events.user_id.notnull() & events.anonymous_id.notnull())
    return both.select(
        source=ibis.literal(ANONYMOUS), external_id=both.anonymous_id, user_id=both.user_id
    ).distinct()


def _frame(data: ir.Table | pd.DataFrame, what: str) -> pd.DataFrame:
    frame = data.to_pandas() if isinstance(data, ir.Table) else pd.DataFrame(data)
    missing = [c for c in ("source", "external_id", "user_id") if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what} has no column {', '.join(missing)} (has: {', '.join(map(str, frame.columns))})",
            hint="identities need source, external_id and user_id (or a second id with linked_source)",
            zh=f"{what} 缺少列 {'、'.join(missing)}",
            hint_zh="身份表需要 source、external_id 和 user_id 三列（或用 linked_source 关联另一个外部 ID）",
        )
    return frame


def _edges(frame: pd.DataFrame) -> pd.DataFrame:
    """Distinct undirected edges ``(a, b)`` between node keys ``"source\\x1fid"`` (a < b)."""
    frame = frame.dropna(subset=["source", "external_id", "user_id"])
    source = frame["source"].astype(str).str.strip().str.lower()
    left = source + "\x1f" + frame["external_id"].astype(str)
    if "linked_source" in frame.columns:
        linked = frame["linked_source"].fillna(USER).astype(str).str.strip().str.lower().replace("", USER)
    else:
        linked = pd.Series(USER, index=frame.index)
    right = linked + "\x1f" + frame["user_id"].astype(str)
    a = left.where(left <= right, right)
    b = right.where(left <= right, left)
    edges = pd.DataFrame({"a": a.to_numpy(), "b": b.to_numpy()})
    return edges[edges["a"] != edges["b"]].drop_duplicates().sort_values(["a", "b"], ignore_index=True)


def _split(node: str) -> tuple[str, str]:
    source, _, value = node.partition("\x1f")
    return source, value


def stitch(
    identities: ir.Table | pd.DataFrame,
    *,
    events: ir.Table | pd.DataFrame | None = None,
    max_links: int = 20,
) -> IdentityMap:
    """Group linked ids into users; the canonical id of a group is its smallest user id.

    Parameters
    ----------
    identities
        Rows ``source, external_id, user_id`` (and optionally ``linked_source``), as in the
        ``identities`` table.
    events
        Events whose rows with both ``user_id`` and ``anonymous_id`` link the two (logins);
        left out, only ``identities`` links.
    max_links
        An id with more distinct links than this is not merged through (``[identity] max_links``).
    """
    if max_links < 1:
        raise InputError(f"max_links must be 1 or more, got {max_links}", zh=f"max_links 至少为 1，收到 {max_links}")
    frames = [_frame(identities, "identities")]
    if events is not None:
        links = event_links(events) if isinstance(events, ir.Table) else _event_link_frame(events)
        frames.append(_frame(links, "events"))
    edges = pd.concat([_edges(f) for f in frames], ignore_index=True).drop_duplicates(ignore_index=True)

    neighbours: dict[str, set[str]] = defaultdict(set)
    for a, b in zip(edges["a"], edges["b"], strict=True):
        neighbours[a].add(b)
        neighbours[b].add(a)
    capped = {n for n, near in neighbours.items() if len(near) > max_links}

    parent = {n: n for n in neighbours}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]  # path halving
            n = parent[n]
        return n

    for a, b in zip(edges["a"], edges["b"], strict=True):
        if a in capped or b in capped:
            continue
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    members: dict[str, list[str]] = defaultdict(list)
    for n in neighbours:
        if n in capped and not n.startswith(USER + "\x1f"):
            continue  # a shared external id belongs to nobody
        members[root(n)].append(n)

    rows = []
    for group in members.values():
        users = sorted(v for s, v in map(_split, group) if s == USER)
        canonical = users[0] if users else None
        group_id = min(f"{s}:{v}" for s, v in map(_split, group))
        for n in group:
            s, v = _split(n)
            rows.append((s, v, canonical, group_id))
    mapping = pd.DataFrame(rows, columns=["source", "external_id", "user_id", "group_id"])
    mapping = mapping.sort_values(["source", "external_id"], ignore_index=True)
    mapping["user_id"] = mapping["user_id"].astype(object).where(mapping["user_id"].notna(), None)

    is_user = mapping["source"] == USER
    external = mapping[~is_user]
    summary = {
        "source_ids": int(external["user_id"].notna().sum()),
        "user_ids": int(is_user.sum()),
        "users": int(mapping.loc[mapping["user_id"].notna(), "user_id"].nunique()),
        "merged_user_ids": int((is_user & (mapping["external_id"] != mapping["user_id"])).sum()),
        "unlinked_ids": int(external["user_id"].isna().sum()),
        "links": len(edges),
        "conflicts": len(capped),
        "max_links": max_links,
    }
    return IdentityMap(mapping=mapping, summary=summary, largest=_largest(mapping),
                       conflicts=_conflicts(capped, neighbours))


def _event_link_frame(events: pd.DataFrame) -> pd.DataFrame:
    both = events.dropna(subset=["user_id", "anonymous_id"])
    return pd.DataFrame({"source": ANONYMOUS, "external_id": both["anonymous_id"].to_numpy(),
                         "user_id": both["user_id"].to_numpy()})


def _largest(mapping: pd.DataFrame, n: int = _LARGEST) -> pd.DataFrame:
    columns = ["group_id", "user_id", "members", "user_ids", "sources"]
    if mapping.empty:
        return pd.DataFrame(columns=columns)
    sizes = mapping.groupby("group_id").agg(
        members=("source", "size"), user_ids=("source", lambda s: int((s == USER).sum()))
    )
    top = sizes.sort_values(["members", "user_ids"], ascending=False, kind="stable").head(n)
    top = top.sort_index().sort_values(["members", "user_ids"], ascending=False, kind="stable")  # ties: group_id
    picked = mapping[mapping["group_id"].isin(top.index)]
    sources = picked.groupby("group_id")["source"].agg(
        lambda s: ", ".join(f"{k} {v}" for k, v in sorted(s.value_counts().items(), key=lambda kv: (-kv[1], kv[0])))
    )
    canonical = picked.groupby("group_id")["user_id"].first()
    out = top.assign(user_id=canonical, sources=sources).reset_index()
    return out[columns].reset_index(drop=True)


def _conflicts(capped: set[str], neighbours: dict[str, set[str]]) -> pd.DataFrame:
    rows = []
    for n in capped:
        s, v = _split(n)
        near = sorted(f"{ns}:{nv}" for ns, nv in map(_split, neighbours[n]))
        rows.append((s, v, len(near), ", ".join(near[:5])))
    out = pd.DataFrame(rows, columns=["source", "external_id", "links", "examples"])
    return out.sort_values(["links", "source", "external_id"], ascending=[False, True, True], ignore_index=True)


def attribute(
    table: ir.Table,
    mapping: IdentityMap | pd.DataFrame | ir.Table,
    *,
    id_col: str = "user_id",
    anonymous_col: str | None = "anonymous_id",
    anonymous_sources: tuple[str, ...] | list[str] = (ANONYMOUS, "device_id"),
) -> ir.Table:
    """``table`` with ``id_col`` replaced by the canonical user id (same columns, same rows).

    A row whose id is in the mapping gets its group's canonical id; other ids stay as they
    are. A row without ``id_col`` but with ``anonymous_col`` (an event before login) gets the
    canonical id of that anonymous id when it is linked to a user (through any source of
    ``anonymous_sources``; an anonymous id linked to two different users is left unattributed).
    """
    if isinstance(mapping, IdentityMap):
        mapping = mapping.mapping
    if isinstance(mapping, pd.DataFrame):
        frame = mapping[["source", "external_id", "user_id"]].astype(
            {"source": str, "external_id": str, "user_id": object}
        )
        mapping = ibis.memtable(frame, schema={"source": "string", "external_id": "string", "user_id": "string"})
    columns = table.columns
    if id_col not in columns:
        raise InputError(f"table has no column {id_col!r} (has: {', '.join(columns)})",
                         zh=f"表中没有列 {id_col!r}（现有：{'、'.join(columns)}）")
    known = mapping.filter(mapping.source == USER)
    known = known.select(_us_id=known.external_id, _us_canonical=known.user_id)
    joined = table.left_join(known, table[id_col] == known._us_id)
    new_id = joined._us_canonical.coalesce(joined[id_col])
    if anonymous_col is not None and anonymous_col in columns:
        sources = [s.lower() for s in anonymous_sources]
        anon = mapping.filter(mapping.source.isin(sources) & mapping.user_id.notnull())
        anon = anon.group_by(_us_anon=anon.external_id).agg(
            _us_anon_user=anon.user_id.min(), _us_anon_users=anon.user_id.nunique()
        )
        anon = anon.filter(anon._us_anon_users == 1)
        joined = joined.left_join(anon, joined[anonymous_col] == anon._us_anon)
        new_id = joined._us_canonical.coalesce(joined[id_col], joined._us_anon_user)
    return joined.select(*[new_id.name(c) if c == id_col else joined[c] for c in columns])


def attribute_tables(
    tables: dict[str, ir.Table],
    mapping: IdentityMap | pd.DataFrame | ir.Table,
    *,
    anonymous_sources: tuple[str, ...] | list[str] = (ANONYMOUS, "device_id"),
) -> dict[str, ir.Table]:
    """Every table with a ``user_id`` attributed (``attribute``); ``users`` then has one row per
    canonical user: the earliest ``registered_at``, and the channel and attributes of the user
    id that registered first (ties: the smallest original id)."""
    out = {}
    for name, t in tables.items():
        if "user_id" not in t.columns:
            out[name] = t
            continue
        if name != "users":
            out[name] = attribute(t, mapping, anonymous_sources=anonymous_sources)
            continue
        tagged = t.mutate(_us_original=t.user_id)
        merged = attribute(tagged, mapping, anonymous_col=None)
        first = ibis.window(group_by=merged.user_id,
                            order_by=[merged.registered_at.asc(nulls_first=False), merged._us_original])
        ranked = merged.mutate(_us_rank=ibis.row_number().over(first),
                               _us_registered=merged.registered_at.min().over(group_by=merged.user_id))
        kept = ranked.filter(ranked._us_rank == 0)
        out[name] = kept.select(*[kept._us_registered.name(c) if c == "registered_at" else kept[c] for c in t.columns])
    return out
