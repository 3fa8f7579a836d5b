"""Settings: defaults from DESIGN.md, overrides from userstrata.toml, errors that name the key."""

import pytest

from userstrata.config import Settings
from userstrata.errors import ConfigError


def test_defaults_follow_the_design():
    s = Settings()
    assert (s.lifecycle.new_days, s.lifecycle.growth_days) == (7, 30)
    assert (s.lifecycle.dormant_after_days, s.lifecycle.churned_after_days) == (30, 90)
    assert s.timezone == "Asia/Shanghai"
    assert [t.name for t in s.tiers.tiers] == ["co_builder", "engaged", "regular", "explorer"]
    assert s.tiers.tiers[-1].target_share == (0.40, 0.50)


def test_toml_overrides(tmp_path):
    path = tmp_path / "userstrata.toml"
    path.write_text(
        'timezone = "UTC"\n[lifecycle]\ndormant_after_days = 45\nchurned_after_days = 120\n'
        "[profile]\nmonetary_window_days = 365\n",
        encoding="utf-8",
    )
    s = Settings.load(path)
    assert s.timezone == "UTC"
    assert s.lifecycle.dormant_after_days == 45 and s.lifecycle.churned_after_days == 120
    assert s.profile.monetary_window_days == 365


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[lifecycle]\ndormant_days = 3\n", "lifecycle.dormant_days: unknown key"),
        ("[lifecycle]\ndormant_after_days = 100\n", "dormant_after_days < churned_after_days"),
        ('timezone = "Mars/Olympus"\n', "unknown time zone 'Mars/Olympus'"),
        ('[rfm]\nsplit = "mode"\n', "rfm.split: Input should be 'mean' or 'median'"),
        ("[[tiers.tiers]]\nname = 'vip'\ntarget_share = [0, 1]\n", "tiers.tiers.0.name"),
        ("[tiers]\ntiers = []\n", "tiers must list each of"),
        ("[lifecycle\n", "not valid TOML"),
    ],
)
def test_wrong_config_names_the_key(tmp_path, toml, message):
    path = tmp_path / "userstrata.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Settings.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_condition_needs_exactly_one_test():
    with pytest.raises(ConfigError, match="exactly one of top, min, max"):
        Settings.from_dict({"tiers": {"tiers": [
            {"name": "co_builder", "target_share": [0, 1], "rules": [{"when": [{"feature": "orders", "min": 1, "top": 0.1}]}]},
            {"name": "engaged", "target_share": [0, 1]},
            {"name": "regular", "target_share": [0, 1]},
            {"name": "explorer", "target_share": [0, 1]},
        ]}})


def test_engine_limits_reach_duckdb(tmp_path):
    from userstrata.store import Store

    settings = Settings.from_dict({"engine": {"memory_limit": "700MB", "threads": 1}})
    store = Store.open(tmp_path / "ws.duckdb", settings=settings)
    limit, threads = store.duckdb.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()
    assert threads == 1
    assert limit.endswith("MiB") and 600 < float(limit.split()[0]) <= 700  # DuckDB reports MiB


def _mib(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "TiB": 1024 ** 2}[unit]


def test_default_memory_limit_is_a_gigabyte_or_a_quarter_of_ram_and_percent_is_of_ram(tmp_path):
    import os

    from userstrata.store import Store

    ram_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    store = Store.open(tmp_path / "a.duckdb", settings=Settings())
    limit = _mib(store.duckdb.execute("SELECT current_setting('memory_limit')").fetchone()[0])
    assert limit == pytest.approx(min(1e9 / 2**20, ram_mib / 4), rel=0.01)  # not DuckDB's 80% of RAM
    half = Store.open(tmp_path / "b.duckdb", settings=Settings.from_dict({"engine": {"memory_limit": "50%"}}))
    limit = _mib(half.duckdb.execute("SELECT current_setting('memory_limit')").fetchone()[0])
    assert limit == pytest.approx(ram_mib / 2, rel=0.01)
    store.close(), half.close()


def test_bad_memory_limit_is_refused():
    with pytest.raises(ConfigError, match="engine.memory_limit"):
        Settings.from_dict({"engine": {"memory_limit": "lots'; DROP TABLE orders; --"}})
