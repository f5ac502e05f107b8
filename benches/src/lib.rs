//! Benchmarks and the load generator (see docs/PERFORMANCE.md).
