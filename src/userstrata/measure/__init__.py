"""Did it work: KPIs, retention, funnels, paths, purchase patterns, bundles, refunds, A/B
results and early warnings, each an analysis over the workspace's tables (docs/metrics.md)."""
