"""One simulated shop served by the API for every test of this folder."""

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from userstrata import Workspace
from userstrata.datasets import simulate_shop
from userstrata.serve.app import create_app
from userstrata.serve.tokens import create_token

END = dt.date(2024, 6, 30)


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    files = simulate_shop(600, folder / "files", seed=11, end=END)
    ws = Workspace.open(folder / "shop.duckdb")
    for name in ("users", "orders", "order_items", "events"):
        ws.load(name, files[name])
    tokens = {role: create_token(ws.store, role)[0] for role in ("viewer", "operator", "admin")}
    client = TestClient(create_app(ws))
    yield ws, client, tokens
    ws.close()


