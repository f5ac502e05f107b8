//! Two bots create a room over gRPC and chat with each other, printing the
//! conversation. Start a server (its gRPC listener is on by default), then:
//! `cargo run -p im-examples --example grpc-bots -- grpc://127.0.0.1:50051`
//! (the bots register `ada` and `babbage` on first run).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "grpc://127.0.0.1:50051".into());
    im_examples::grpc_bots::converse(&url, ("ada", "babbage"), "password123", |line| println!("{line}")).await
}
