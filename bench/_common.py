"""What the measure benches share: the DuckDB settings of every connection, peak memory, load."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def config() -> dict:
    """DuckDB settings of every connection (both contestants get the same)."""
    return {"threads": int(os.environ.get("BENCH_THREADS", "2")),
            "memory_limit": os.environ.get("BENCH_MEMORY_LIMIT", "3GB")}


def vm_hwm_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])
