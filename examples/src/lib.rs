//! Examples live in the `*.rs` files beside this crate manifest.
