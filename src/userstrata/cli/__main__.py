"""``python -m userstrata.cli``: the same as the ``userstrata`` command."""

from userstrata.cli import app

app(prog_name="userstrata")
