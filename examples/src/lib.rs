//! Examples of the im chat engine. The runnable programs are the `*.rs`
//! files beside this crate's manifest; the terminal client's logic lives in
//! [`cli`] and [`embed`] so that they can be tested.

pub mod call_demo;
pub mod cli;
pub mod embed;
pub mod grpc_bots;
