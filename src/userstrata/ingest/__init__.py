"""Ingest: raw files -> canonical tables + rejects, nothing lost; the load log and undo.

```python
report = load_file(store, "orders", "orders.csv", mapping={"order_id": "单号"})
report.rows_read == report.rows_inserted + report.rows_updated + report.rows_unchanged + report.rows_rejected
list_rejects(store, load_id=report.load_id)   # each bad row, its column and why
unload(store, report.load_id)                  # undo it exactly
```
"""

from userstrata.ingest.encoding import detect_encoding
from userstrata.ingest.history import UnloadReport, list_loads, table_known_at, unload
from userstrata.ingest.load import LoadReport, list_rejects, load_file, load_frame

__all__ = [
    "LoadReport", "UnloadReport", "detect_encoding", "list_loads", "list_rejects", "load_file", "load_frame",
    "table_known_at", "unload",
]
