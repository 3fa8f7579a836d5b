"""Delivery to a webhook: a real HTTP receiver on 127.0.0.1 that fails and times out, reruns
that send nothing twice, a kill -9 in the middle of `send`, 4xx failures, the plan file route."""

from __future__ import annotations

import datetime as dt_
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import userstrata.cli.send  # noqa: F401 - registers the command
from userstrata.activate.deliver import contact_keys, deliveries, send_contacts
from userstrata.activate.plan import build_plan
from userstrata.activate.playbooks import Playbook
from userstrata.cli import app
from userstrata.cli.plan import _readable
from userstrata.export import write_table
from userstrata.store import Store

MON = dt_.date(2024, 7, 1)
runner = CliRunner()


class Receiver:
    """A webhook receiver: records every POST (raw), acknowledges keys once (dedup), fails a
    share of requests with 500 and sleeps past the client's timeout on another share (after
    recording the batch, as a real receiver that got it would)."""

    def __init__(self, *, fail: float = 0.0, stall: float = 0.0, stall_s: float = 0.0, delay_s: float = 0.0,
                 status: int | None = None, seed: int = 1):
        self.fail, self.stall, self.stall_s, self.delay_s, self.status = fail, stall, stall_s, delay_s, status
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.batches: list[list[str]] = []  # every batch received, in order
        self.headers: list[str] = []
        self.accepted: set[str] = set()
        self.outcomes: list[int] = []
        self.sizes: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                keys = [c["idempotency_key"] for c in body["contacts"]]
                with outer.lock:
                    draw = outer.rng.random()
                    if outer.status is not None:
                        code = outer.status
                    elif draw < outer.fail:
                        code = 500
                    else:
                        code = 200
                    stalled = code == 200 and outer.fail <= draw < outer.fail + outer.stall
                    outer.outcomes.append(code)
                    outer.sizes.append(len(keys))
                    if code == 200:  # received (even when the client has given up waiting)
                        outer.batches.append(keys)
                        outer.headers.append(self.headers["Idempotency-Key"])
                        outer.accepted.update(keys)
                time.sleep(outer.stall_s if stalled else outer.delay_s)
                answer = b"bad template" if code == 400 else b"ok"
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client timed out and closed the connection

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def raw_counts(self) -> Counter:
        return Counter(k for batch in self.batches for k in batch)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(**kw):
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def small_plan(n_users: int = 60) -> pd.DataFrame:
    """A real plan: two segment playbooks for every user, one with a 50% holdout."""
    prof = pd.DataFrame([(f"u{i:03d}", "engaged", "mature") for i in range(n_users)],
                        columns=["user_id", "tier", "lifecycle"])
    books = [Playbook(name="care", channel="sms", template="tpl_care", goal="care", priority=50, cooldown_days=7,
                      where="tier != ''"),
             Playbook(name="upgrade", channel="wecom", template="tpl_up", goal="upgrade", priority=40,
                      cooldown_days=7, where="tier != ''", variants={"gift": 0.5, "holdout": 0.5})]
    members = pd.DataFrame({"user_id": prof["user_id"], "care": True, "upgrade": True})
    return build_plan(prof, books, members=members, start=MON, days=7).contacts


def sendable(contacts: pd.DataFrame) -> pd.DataFrame:
    return contacts[contacts["status"].astype(str).isin(["planned", "moved"])]


def key_of(row) -> str:
    text = "\x1f".join([row.user_id, str(row.playbook), str(row.channel),
                        pd.Timestamp(row.send_at).strftime("%Y-%m-%dT%H:%M:%S")])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def touches(store) -> pd.DataFrame:
    return store.con.execute(store.table("touches"))


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "shop.duckdb")
    yield s
    s.close()


# -- keys ------------------------------------------------------------------------------------
def test_keys_are_a_stable_hash_of_user_playbook_channel_and_send_time():
    contacts = small_plan(10)
    keys = contact_keys(contacts)
    assert list(keys) == [key_of(r) for r in contacts.itertuples()]
    assert list(contact_keys(small_plan(10))) == list(keys)  # the same plan rebuilt: the same keys
    assert keys.is_unique
    moved = contacts.head(1).assign(send_at=contacts["send_at"].iloc[0] + pd.Timedelta(minutes=1))
    assert contact_keys(moved).iloc[0] != keys.iloc[0]


# -- a flaky receiver ------------------------------------------------------------------------
def test_flaky_receiver_gets_every_contact_once_and_the_log_shows_retries(store, receiver_factory):
    contacts = small_plan(60)
    expected = {key_of(r) for r in sendable(contacts).itertuples()}
    holdouts = contacts[contacts["reason_code"].astype(str) == "holdout"]
    assert len(expected) > 60 and len(holdouts) > 5  # a real plan with both arms
    rx = receiver_factory(fail=0.3, stall=0.1, stall_s=0.6, seed=7)
    report = send_contacts(store, contacts, url=rx.url, batch_size=10, timeout_s=0.3, retries=8, backoff_s=0.01)
    assert report.sent == len(expected) and report.failed == 0 and report.stopped is None
    assert rx.accepted == expected  # every contact delivered, by key
    raw = rx.raw_counts()
    assert max(raw.values()) >= 2  # a stalled batch reached the receiver and was sent again
    assert 500 in rx.outcomes
    log = deliveries(store)
    sent = log[log["status"] == "sent"]
    assert set(sent["key"]) == expected and (sent["attempts"] > 1).any() and (sent["attempts"] >= 1).all()
    assert report.requests == len(rx.outcomes) > report.batches
    # one request per attempt: the log's attempts, contact by contact, add up to what the receiver got
    assert sent["attempts"].sum() == sum(rx.sizes)
    t = touches(store)
    made = t[t["outcome"] == "sent"]
    assert sorted(made["touch_id"]) == sorted(expected) and made["touch_id"].is_unique
    assert (made["campaign"].isin(["care", "upgrade"])).all()
    up = made[made["campaign"] == "upgrade"]
    assert (up["variant"] == "gift").all() and made[made["campaign"] == "care"]["variant"].isna().all()
    held = t[t["outcome"] == "holdout"]
    assert sorted(held["touch_id"]) == sorted(key_of(r) for r in holdouts.itertuples())
    assert not set(held["touch_id"]) & rx.accepted  # the holdout is never sent


def test_rerunning_the_same_plan_posts_nothing_and_writes_no_touch(store, receiver_factory):
    contacts = small_plan(20)
    rx = receiver_factory()
    first = send_contacts(store, contacts, url=rx.url, batch_size=7)
    before = (len(rx.outcomes), len(touches(store)), deliveries(store))
    again = send_contacts(store, small_plan(20), url=rx.url, batch_size=7)
    assert first.sent == len(sendable(contacts)) and again.sent == 0 and again.requests == 0
    assert again.skipped == first.sent and again.holdout == 0
    assert len(rx.outcomes) == before[0] and len(touches(store)) == before[1]
    pd.testing.assert_frame_equal(deliveries(store), before[2])


def test_a_4xx_fails_at_once_with_the_reason_and_a_rerun_retries_it(store, receiver_factory):
    contacts = small_plan(8)
    bad = receiver_factory(status=400)
    report = send_contacts(store, contacts, url=bad.url, batch_size=5, retries=5, backoff_s=0.01)
    n = len(sendable(contacts))
    assert report.failed == n and report.sent == 0 and report.stopped is None  # every batch tried once
    assert len(bad.outcomes) == -(-n // 5)  # no retry of a 4xx
    log = deliveries(store).set_index("key")
    failed = log[log["status"] == "failed"]
    assert len(failed) == n and (failed["attempts"] == 1).all() and (failed["http_status"] == 400).all()
    assert (failed["reason"] == "HTTP 400: bad template").all()
    assert report.reasons == {"HTTP 400: bad template": n}
    assert (touches(store)["outcome"] == "sent").sum() == 0
    good = receiver_factory()
    rerun = send_contacts(store, contacts, url=good.url, batch_size=5)
    assert rerun.sent == n and good.accepted == {key_of(r) for r in sendable(contacts).itertuples()}
    log = deliveries(store).set_index("key")
    assert (log.loc[list(good.accepted), "attempts"] == 2).all()  # one failed try, one that worked
    assert (log.loc[list(good.accepted), "status"] == "sent").all()


def test_an_unreachable_receiver_stops_the_run_after_the_retries(store):
    contacts = small_plan(8)
    calls = []

    def refused(url, body, headers, timeout_s):
        calls.append(headers["Idempotency-Key"])
        raise ConnectionRefusedError(111, "refused")

    pauses = []
    report = send_contacts(store, contacts, url="http://127.0.0.1:9/x", batch_size=5, retries=3, backoff_s=1.0,
                           post=refused, sleep=pauses.append, seed=3)
    assert len(calls) == 4 and len(set(calls)) == 1  # one batch, 1 + 3 tries, the same batch key
    assert report.failed == 5 and report.pending == len(sendable(contacts)) - 5
    assert report.stopped == "no answer (ConnectionRefusedError) after 4 attempts"
    # exponential backoff with jitter in [0.5, 1): 1, 2, 4 seconds scaled
    assert [round(p / b, 6) >= 0.5 and p / b < 1 for p, b in zip(pauses, (1, 2, 4))] == [True] * 3


def test_a_429_is_retried(store):
    contacts = small_plan(3)
    answers = iter([429, 503, 200] + [200] * 10)
    report = send_contacts(store, contacts, url="http://h/x", batch_size=100, post=lambda *a: (next(answers), ""),
                           sleep=lambda s: None)
    assert report.sent == len(sendable(contacts)) and report.requests == 3
    assert (deliveries(store).query("status == 'sent'")["attempts"] == 3).all()


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_sends_a_csv_plan_in_chinese_and_reports_in_chinese(tmp_path, receiver_factory):
    Store.open(tmp_path / "ws.duckdb").close()
    contacts = small_plan(12)
    path = tmp_path / "plan.csv"
    readable = _readable(contacts, "zh")  # as `userstrata plan --out plan.csv --lang zh` writes it
    readable["发送时间"] = readable["发送时间"].dt.tz_localize("Asia/Shanghai")
    write_table(readable, path, lang="zh")
    rx = receiver_factory()
    args = ["send", "--channel", "webhook", "--url", rx.url, "--plan", str(path), "--only", "sms",
            "--lang", "zh", "-w", str(tmp_path / "ws.duckdb")]
    out = runner.invoke(app, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    sms = sendable(contacts)[sendable(contacts)["channel"].astype(str) == "sms"]
    assert rx.accepted == {key_of(r) for r in sms.itertuples()}  # keys survive the round trip through CSV
    assert "本次已发送" in out.output and f"{len(sms)}" in out.output
    again = runner.invoke(app, args, catch_exceptions=False)
    assert "此前已发送，跳过" in again.output and len(rx.outcomes) == -(-len(sms) // 100)


def test_cli_errors_are_bilingual_with_hints(tmp_path):
    Store.open(tmp_path / "ws.duckdb").close()
    pd.DataFrame({"user_id": ["u1"], "channel": ["sms"]}).to_parquet(tmp_path / "p.parquet")
    base = ["--channel", "webhook", "-w", str(tmp_path / "ws.duckdb")]
    bad_url = runner.invoke(app, ["send", *base, "--url", "push.example.com", "--lang", "zh"])
    assert bad_url.exit_code == 2 and "不是 http(s) 地址" in bad_url.output
    missing = runner.invoke(app, ["send", *base, "--url", "http://h/x", "--plan", str(tmp_path / "p.parquet")])
    assert missing.exit_code == 2 and "no column playbook, send_at, status" in missing.output
    nofile = runner.invoke(app, ["send", *base, "--url", "http://h/x", "--plan", str(tmp_path / "no.csv"),
                                 "--lang", "zh"])
    assert nofile.exit_code == 2 and "文件不存在" in nofile.output
    transport = runner.invoke(app, ["send", "--channel", "sms", "--url", "http://h/x", "-w", str(tmp_path / "ws.duckdb")])
    assert transport.exit_code == 2 and "--only" in transport.output
    down = runner.invoke(app, ["send", *base, "--url", "http://127.0.0.1:9/x", "--plan", str(_plan_file(tmp_path)),
                               "--retries", "1", "--backoff", "0", "--timeout", "1"])
    assert down.exit_code == 2 and "did not acknowledge" in down.output and "run the same command again" in down.output


def _plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.parquet"
    small_plan(5).to_parquet(path)
    return path


def test_dry_run_sends_and_logs_nothing(tmp_path, receiver_factory):
    Store.open(tmp_path / "ws.duckdb").close()
    rx = receiver_factory()
    out = runner.invoke(app, ["send", "--channel", "webhook", "--url", rx.url, "--plan", str(_plan_file(tmp_path)),
                              "--dry-run", "-w", str(tmp_path / "ws.duckdb")], catch_exceptions=False)
    assert out.exit_code == 0 and "would be sent" in out.output and "idempotency_key" in out.output
    assert rx.outcomes == []
    s = Store.open(tmp_path / "ws.duckdb")
    assert deliveries(s).empty and touches(s).empty
    s.close()


# -- kill -9 ---------------------------------------------------------------------------------
_SCRIPT = """
import sys
import userstrata.cli.send
from userstrata.cli import app
app(sys.argv[1:], prog_name="userstrata")
"""


@pytest.mark.slow
def test_kill_9_in_the_middle_then_a_rerun_delivers_the_rest_and_nothing_twice(tmp_path, receiver_factory):
    Store.open(tmp_path / "ws.duckdb").close()
    contacts = small_plan(40)
    plan = tmp_path / "plan.parquet"
    contacts.to_parquet(plan)
    expected = {key_of(r) for r in sendable(contacts).itertuples()}
    rx = receiver_factory(delay_s=0.3)  # each batch is acknowledged 0.3 s after it arrived
    args = ["send", "--channel", "webhook", "--url", rx.url, "--plan", str(plan), "--batch-size", "5",
            "-w", str(tmp_path / "ws.duckdb")]
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(rx.batches) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert len(rx.batches) >= 4, proc.stderr.read().decode() if proc.poll() is not None else "too slow"
    os.kill(proc.pid, signal.SIGKILL)  # the 4th batch is at the receiver, its answer not yet back
    proc.wait()
    seen_before = [list(b) for b in rx.batches]
    s = Store.open(tmp_path / "ws.duckdb")  # opens fine after the kill
    logged = set(deliveries(s).query("status == 'sent'")["key"])
    s.close()
    assert logged and logged < expected
    unlogged = [b for b in seen_before if not set(b) <= logged]
    assert len(unlogged) == 1 and unlogged[0] == seen_before[-1]  # only the batch in flight at the kill
    assert not set(unlogged[0]) & logged
    out = runner.invoke(app, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert rx.accepted == expected  # the union delivers every contact
    twice = {k for k, n in rx.raw_counts().items() if n > 1}
    assert twice == set(unlogged[0])  # exactly the batch in flight, nothing else
    assert all(n <= 2 for n in rx.raw_counts().values())
    s = Store.open(tmp_path / "ws.duckdb")
    t = touches(s)
    assert sorted(t.loc[t["outcome"] == "sent", "touch_id"]) == sorted(expected)
    assert t["touch_id"].is_unique
    s.close()


# -- the plan rebuilt by --date --------------------------------------------------------------
@pytest.mark.slow
def test_send_by_date_twice_rebuilds_the_same_plan_and_sends_nothing_the_second_time(tmp_path, receiver_factory):
    from userstrata.activate.deliver import history_for_resend
    from userstrata.activate.plan import make_plan
    from userstrata.datasets import simulate_shop
    from userstrata.schema import CANONICAL
    from userstrata.workspace import Workspace

    files = simulate_shop(150, tmp_path / "files", seed=3, end=dt_.date(2024, 6, 30))
    path = tmp_path / "shop.duckdb"
    with Workspace.open(path) as ws:
        for name, file in files.items():
            if name in CANONICAL:
                ws.load(name, file)
    rx = receiver_factory()
    args = ["send", "--channel", "webhook", "--url", rx.url, "--date", "2024-07-01", "--days", "7", "-w", str(path)]
    first = runner.invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0 and rx.accepted
    posts = len(rx.outcomes)
    second = runner.invoke(app, args, catch_exceptions=False)
    assert second.exit_code == 0 and len(rx.outcomes) == posts and rx.raw_counts().most_common(1)[0][1] == 1
    with Workspace.open(path) as ws:
        start = dt_.date(2024, 7, 1)
        inputs = dict(**ws._inputs(), profile=ws.profile(start - dt_.timedelta(days=1)), start=start, days=7)
        same = make_plan(**inputs, touches=history_for_resend(ws.store, ws.table("touches"), start, 7)).contacts
        naive = make_plan(**inputs, touches=ws.table("touches")).contacts  # the sends counted as history
    assert set(contact_keys(sendable(same))) == rx.accepted
    assert set(contact_keys(sendable(naive))) != rx.accepted  # why the window's own touches are left out
