"""Ingest: raw files -> canonical tables + rejects, nothing lost.

```python
report = load_file(store, "orders", "orders.csv", mapping={"order_id": "单号"})
report.rows_read == report.rows_accepted + report.rows_rejected + report.rows_duplicate
list_rejects(store, load_id=report.load_id)   # each bad row, its column and why
```
"""

from userstrata.ingest.encoding import detect_encoding
from userstrata.ingest.load import LoadReport, list_rejects, load_file, load_frame

__all__ = ["LoadReport", "detect_encoding", "list_rejects", "load_file", "load_frame"]
