"""A workspace named "spark" opens a Spark session from the settings and reads the lake's Parquet
files as the canonical tables; the CLI runs on it with ``--workspace spark``."""

import pandas as pd
import pytest
from parity import END, _same_frames
from typer.testing import CliRunner

from userstrata import Workspace
from userstrata.cli import app
from userstrata.config import Settings
from userstrata.errors import InputError

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def test_workspace_spark_reads_the_lake(spark, parquet, on_duckdb):
    settings = Settings.from_dict({"engine": {"spark": {"master": "local[2]", "tables": str(parquet)}}})
    ws = Workspace.open("spark", settings=settings)
    assert ws.store.engine == "spark"
    _same_frames(on_duckdb.profile(END).to_pandas(), ws.profile(END).to_pandas())


def test_cli_profile_with_workspace_spark(spark, parquet, on_duckdb, tmp_path):
    config = tmp_path / "userstrata.toml"
    config.write_text(f'[engine.spark]\nmaster = "local[2]"\ntables = "{parquet}"\n', encoding="utf-8")
    out = tmp_path / "p.parquet"
    result = CliRunner().invoke(app, ["profile", "--as-of", str(END), "--out", str(out), "-w", "spark", "-c", str(config)])
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    want = on_duckdb.profile(END).to_pandas()
    assert sorted(got["user_id"]) == sorted(want["user_id"])
    assert got.set_index("user_id")["tier"].sort_index().tolist() == want.set_index("user_id")["tier"].sort_index().tolist()


def test_a_missing_lake_folder_is_named(tmp_path):
    settings = Settings.from_dict({"engine": {"spark": {"tables": str(tmp_path / "nowhere")}}})
    with pytest.raises(InputError, match="nowhere"):
        Workspace.open("spark", settings=settings)
