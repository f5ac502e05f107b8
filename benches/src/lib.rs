//! # im-benches
//!
//! The load generator behind the `im-load` binary, and (in `benches/`) the
//! criterion micro-benchmarks. Every scenario speaks the real protocol over
//! real WebSocket connections and **verifies what it measured**: every acked
//! message was delivered exactly once to every member it was meant for.
//! See `docs/PERFORMANCE.md` for the method and the results.

pub mod calls;
pub mod client;
pub mod cluster;
pub mod inbox;
pub mod scenario;
pub mod search;
pub mod stats;
pub mod typing;
