"""strongroom's benchmark harness: ``make bench`` (``python -m bench``) prints ops/s and
p50/p99 latency per store, with ratios against crypto references measured in the same run, then
the audit benchmarks (audited vs unaudited reads, audit ingest, audit queries; bench_audit)."""
