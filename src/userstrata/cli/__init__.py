"""The ``userstrata`` command: parse, call one function, format the result.

One module per group of commands; importing them registers the commands on ``app`` (in this
order in ``--help``). Errors a user can fix print one red line and the hint and exit with
code 2 (``--debug`` shows the traceback instead).
"""

from userstrata.cli._app import app
from userstrata.cli import ingest, profile, predict, renewals, change, clusters, tags, segments, identities, alerts, kpis, funnels, patterns, recall, abtest, plan, send, report, serve, demo  # noqa: F401, I001  (registers the commands)

__all__ = ["app"]
