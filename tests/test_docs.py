"""The documented userstrata.toml is valid and equals the defaults, so the docs cannot drift."""

import re
import tomllib
from pathlib import Path

from userstrata.config import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_documented_config_is_the_default():
    block = re.search(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    assert Settings.from_dict(tomllib.loads(block)) == Settings()
