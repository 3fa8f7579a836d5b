"""The REST API: every endpoint, role and bad request gives the documented answer, and a user's
profile is the one the workspace computes."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from userstrata.serve.tokens import create_token, revoke_token

END = dt.date(2024, 6, 30)  # the simulated shop's last day (conftest.py)


def _auth(secret: str, lang: str = "en") -> dict:
    return {"Authorization": f"Bearer {secret}", "Accept-Language": lang}


def _is_error(response, status: int, code: str) -> dict:
    body = response.json()
    assert response.status_code == status, body
    assert body["code"] == code and body["message"] and set(body) == {"code", "message", "hint"}
    return body


def test_health_needs_no_token_and_names_the_snapshot(served):
    ws, client, _ = served
    body = client.get("/v1/health").json()
    assert body["status"] == "ok" and body["profiles_as_of"] == END.isoformat()
    assert body["users"] == ws.profile(END).count().execute()


def test_a_user_is_the_profile_the_workspace_computes(served):
    ws, client, tokens = served
    profile = ws.profile(END).to_pandas().set_index("user_id")
    buyer = profile[profile["orders"] > 1].index[0]
    got = client.get(f"/v1/users/{buyer}", headers=_auth(tokens["operator"])).json()
    want = profile.loc[buyer]
    assert got["tier"] == want["tier"] and got["lifecycle"] == want["lifecycle"]
    assert got["orders"] == want["orders"] and got["monetary"] == pytest.approx(want["monetary"])
    assert got["tier_reason"] == want["tier_reason"] and got["rfm_cell"] == want["rfm_cell"]
    assert pd.Timestamp(got["last_ts"]) == want["last_ts"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}])
def test_no_or_wrong_token_is_401(served, headers):
    _, client, _ = served
    _is_error(client.get("/v1/segments", headers=headers), 401, "unauthorized")


def test_revoked_and_expired_tokens_are_401(served):
    ws, client, _ = served
    revoked, token = create_token(ws.store, "admin")
    assert client.get("/v1/segments", headers=_auth(revoked)).status_code == 200
    revoke_token(ws.store, token.token_id)
    _is_error(client.get("/v1/segments", headers=_auth(revoked)), 401, "unauthorized")
    expired, token = create_token(ws.store, "admin", expires_days=1)
    ws.store.duckdb.execute("UPDATE api_tokens SET expires_at = now()::TIMESTAMP - INTERVAL 1 MINUTE "
                            "WHERE token_id = ?", [token.token_id])
    _is_error(client.get("/v1/segments", headers=_auth(expired)), 401, "unauthorized")


def test_roles_are_ordered(served):
    _, client, tokens = served
    body = _is_error(client.get("/v1/users/x", headers=_auth(tokens["viewer"], "zh")), 403, "forbidden")
    assert "operator" in body["message"] and "需要" in body["message"]
    for role in ("operator", "admin"):
        assert client.get("/v1/users/x", headers=_auth(tokens[role])).status_code == 404
    assert client.get("/v1/segments", headers=_auth(tokens["viewer"])).status_code == 200


def test_unknown_user_and_segment_are_404_and_bad_fields_422(served):
    _, client, tokens = served
    assert "'nobody'" in _is_error(client.get("/v1/users/nobody", headers=_auth(tokens["operator"])), 404, "not_found")["message"]
    _is_error(client.get("/v1/segments/nope/members", headers=_auth(tokens["operator"])), 422, "invalid_input")
    body = _is_error(client.get("/v1/segments/lapsed_high_value/members?limit=0", headers=_auth(tokens["operator"])),
                     422, "invalid_input")
    assert body["message"].startswith("limit:")
    body = _is_error(client.get("/v1/migration?from=30/06/2024", headers=_auth(tokens["viewer"])), 422, "invalid_input")
    assert body["message"].startswith("from:")


def test_members_pages_cover_the_segment_exactly_once(served):
    ws, client, tokens = served
    want = sorted(ws.segment("lapsed_high_value", END)["user_id"])
    assert len(want) > 7
    seen, cursor = [], None
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/v1/segments/lapsed_high_value/members?{query}", headers=_auth(tokens["operator"])).json()
        seen += [m["user_id"] for m in page["members"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == want


def test_migration_matches_the_workspace(served):
    ws, client, tokens = served
    start = dt.date(2024, 3, 31)
    got = client.get(f"/v1/migration?from={start}&to={END}", headers=_auth(tokens["viewer"])).json()
    want = ws.migration(start, END)
    assert got["counts"]["explorer"]["regular"] == want.counts.loc["explorer", "regular"]
    assert got["upgrades"] == want.upgrades and got["changed_share"] == pytest.approx(want.changed_share)
