//! Criterion benchmarks of sprint, in `benches/`: `attention` (the functional model against
//! dense attention and candle, side by side), `eval_throughput` (what `sprint eval` runs per
//! document) and `sim` (simulator scenarios). Run with
//! `cargo bench -p sprint-bench --bench NAME`. No library code.
