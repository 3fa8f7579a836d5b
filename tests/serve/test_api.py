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


def test_writes_need_admin_and_refuse_oversized_or_malformed_batches_writing_nothing(served):
    ws, client, tokens = served
    before = ws.table("events").count().execute()
    row = {"user_id": "u-new", "ts": "2024-06-30 10:00:00", "event": "login"}
    assert client.post("/v1/events", json={"rows": [row]}, headers=_auth(tokens["operator"])).status_code == 403
    from userstrata.serve import app as api

    big = {"rows": [row] * (api.MAX_BATCH + 1)}
    _is_error(client.post("/v1/events", json=big, headers=_auth(tokens["admin"])), 413, "too_large")
    body = _is_error(client.post("/v1/events", json={"rows": "x"}, headers=_auth(tokens["admin"])), 422, "invalid_input")
    assert body["message"].startswith("rows")
    bad = client.post("/v1/events", content=b"{not json", headers={**_auth(tokens["admin"]), "content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"
    huge = client.post("/v1/events", content=b"x" * (api.MAX_BODY + 1), headers=_auth(tokens["admin"]))
    assert huge.status_code == 413
    assert ws.table("events").count().execute() == before


def test_a_posted_order_shows_in_the_users_profile_at_once_and_reposting_counts_once(served):
    ws, client, tokens = served
    admin = _auth(tokens["admin"])
    order = {"order_id": "api-o1", "user_id": "api-buyer", "ts": "2024-06-30 03:00:00", "amount": 6480.0}
    first = client.post("/v1/orders", json={"rows": [order]}, headers=admin).json()
    assert (first["inserted"], first["rejected"], first["users_refreshed"]) == (1, 0, 1)
    got = client.get("/v1/users/api-buyer", headers=admin).json()
    want = ws.profile().to_pandas().set_index("user_id").loc["api-buyer"]  # the batch computation
    assert got["orders"] == 1 == want["orders"] and got["monetary"] == pytest.approx(6480.0)
    assert got["tier"] == want["tier"] and got["lifecycle"] == want["lifecycle"]
    again = client.post("/v1/orders", json={"rows": [order]}, headers=admin).json()
    assert again["inserted"] == 0 and again["unchanged"] == 1
    assert client.get("/v1/users/api-buyer", headers=admin).json()["orders"] == 1
    # an event for the same user updates her activity
    event = {"event_id": "api-e1", "user_id": "api-buyer", "ts": "2024-06-30 05:00:00", "event": "login"}
    assert client.post("/v1/events", json={"rows": [event]}, headers=admin).json()["inserted"] == 1
    # times without a zone are shop time (Asia/Shanghai, UTC+8), as in files; profiles hold UTC
    assert pd.Timestamp(client.get("/v1/users/api-buyer", headers=admin).json()["last_ts"]) == pd.Timestamp("2024-06-29 21:00:00")


def test_rejected_rows_are_named_and_the_rest_loaded(served):
    ws, client, tokens = served
    rows = [{"order_id": "api-o2", "user_id": "api-2", "ts": "2024-06-29 03:00:00", "amount": "abc"},
            {"order_id": "api-o3", "user_id": "api-3", "ts": "2024-06-29 03:00:00", "amount": 30}]
    body = client.post("/v1/orders", json={"rows": rows}, headers=_auth(tokens["admin"], "zh")).json()
    assert body["rows_read"] == 2 and body["inserted"] == 1 and body["rejected"] == 1
    (reject,) = body["rejects"]
    assert reject["row"] == 1 and reject["column"] == "amount" and reject["value"] == "abc"
    assert body["users_refreshed"] == 1


def test_measure_endpoints_mirror_the_workspace(served):
    ws, client, tokens = served
    viewer = _auth(tokens["viewer"], "zh")
    peaks = client.get("/v1/patterns", headers=viewer).json()["peaks"]
    want = ws.purchase_patterns().peaks(5)
    assert [(p["weekday"], p["hour"], p["orders"]) for p in peaks] == list(
        zip(want["weekday"], want["hour"], want["orders"]))
    pairs = client.get("/v1/bundles?level=category&min_support=0.01&top=3", headers=viewer).json()["pairs"]
    want = ws.bundles(level="category", min_support=0.01).pairs.head(3)
    assert [(p["item_a"], p["item_b"], p["baskets"]) for p in pairs] == list(
        zip(want["item_a"], want["item_b"], want["baskets"]))
    rates = client.get("/v1/refunds?top=1", headers=viewer).json()["rates"][0]
    assert rates["refunded_orders"] == ws.refunds().rates.iloc[0]["refunded_orders"]
    assert client.get("/v1/bundles", headers=_auth("us_nope")).status_code == 401
    body = _is_error(client.get("/v1/bundles?min_support=2", headers=viewer), 422, "invalid_input")
    assert body["message"].startswith("min_support")


def test_alerts_counts_for_viewers_and_user_alerts_for_operators(served):
    ws, client, tokens = served
    ws.alerts(END)
    kept = ws.alert_list(open_only=True)
    assert (kept["subject_type"] == "user").any()
    seen = client.get("/v1/alerts", headers=_auth(tokens["viewer"])).json()
    assert sum(c["alerts"] for c in seen["counts"]) == len(kept)
    assert all(a["subject_type"] == "segment" for a in seen["alerts"])
    full = client.get(f"/v1/alerts?top={len(kept)}", headers=_auth(tokens["operator"], "zh")).json()["alerts"]
    assert sorted(a["alert_id"] for a in full) == sorted(kept["alert_id"]) and "seen_zh" in full[0]


def test_funnel_endpoint_mirrors_the_workspace(served):
    ws, client, tokens = served
    start = dt.date(2024, 4, 1)
    got = client.get(f"/v1/funnels?steps=page_view,add_to_cart,purchase&from={start}&to={END}",
                     headers=_auth(tokens["viewer"])).json()["steps"]
    want = ws.funnel(["page_view", "add_to_cart", "purchase"], start, END).steps
    assert [s["count"] for s in got] == want["count"].tolist()
    body = _is_error(client.get(f"/v1/funnels?steps=page_view&from={start}", headers=_auth(tokens["viewer"])),
                     422, "invalid_input")
    assert body["message"]


def test_segment_export_plan_and_runs(served):
    ws, client, tokens = served
    operator = _auth(tokens["operator"], "zh")
    csv = client.get("/v1/segments/lapsed_high_value/export", headers=operator)
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert csv.status_code == 200 and "lapsed_high_value" in lines[0]
    assert len(lines) - 2 == len(ws.segment("lapsed_high_value", END))
    assert client.get("/v1/segments/lapsed_high_value/export", headers=_auth(tokens["viewer"])).status_code == 403
    # contact fields: admin only; the simulated shop keeps no phone numbers, which the answer says
    _is_error(client.get("/v1/segments/lapsed_high_value/export?contacts=phone", headers=operator), 403, "forbidden")
    missing = _is_error(client.get("/v1/segments/lapsed_high_value/export?contacts=phone",
                                   headers=_auth(tokens["admin"])), 422, "invalid_input")
    assert "phone" in missing["message"]
    plan = client.get("/v1/plan?days=3&top=5", headers=operator).json()
    assert plan["start"] == (END + dt.timedelta(days=1)).isoformat() and len(plan["contacts"]) <= 5
    assert plan["contacts_total"] >= len(plan["contacts"]) and {"tier"} <= set(plan["fairness"][0])
    assert client.post("/v1/runs", headers=operator).status_code == 403
    started = client.post("/v1/runs", headers=_auth(tokens["admin"]))
    assert started.status_code == 202
    import time

    for _ in range(600):
        run = client.get(started.json()["status_url"], headers=operator).json()
        if run["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert run["status"] == "done" and run["steps_done"] == ["snapshot", "alerts", "reload", "pages"], run
    # the run made the pages' aggregates: viewing the plan page now computes no plan
    calls = []
    plan_of = ws.plan
    ws.plan = lambda *a, **k: calls.append(a) or plan_of(*a, **k)
    try:
        client.cookies.set("userstrata_token", tokens["operator"])
        assert client.get("/dashboard/plan?lang=zh").status_code == 200 and calls == []
    finally:
        ws.plan = plan_of
        client.cookies.clear()
    _is_error(client.get("/v1/runs/nope", headers=operator), 404, "not_found")


def test_rate_limit_is_per_token(tmp_path, served):
    from fastapi.testclient import TestClient

    from userstrata.serve.app import create_app

    ws, _, tokens = served
    limited = TestClient(create_app(ws, requests_per_minute=3))
    for _ in range(3):
        assert limited.get("/v1/segments", headers=_auth(tokens["viewer"])).status_code == 200
    _is_error(limited.get("/v1/segments", headers=_auth(tokens["viewer"])), 429, "rate_limited")
    assert limited.get("/v1/segments", headers=_auth(tokens["operator"])).status_code == 200


def test_kpis_and_cohorts_mirror_the_workspace(served):
    ws, client, tokens = served
    start = dt.date(2024, 1, 1)
    got = client.get(f"/v1/kpis?from={start}&to={END}&grain=month", headers=_auth(tokens["viewer"])).json()["kpis"]
    want = ws.kpis(start, END, grain="month").table
    assert [k["active_users"] for k in got] == want["active_users"].tolist()
    cells = client.get(f"/v1/cohorts?from={start}&to={END}&period=week&periods=4", headers=_auth(tokens["viewer"])).json()
    want = ws.retention(start, END, period="week", periods=4).summary
    assert [c["returned"] for c in cells["summary"]] == want["returned"].tolist()
    body = _is_error(client.get(f"/v1/kpis?from={start}&grain=hour", headers=_auth(tokens["viewer"])), 422, "invalid_input")
    assert "hour" in body["message"]
