//! A terminal chat client.
//!
//! Run a server (`cargo run -p im-server`), then in two terminals:
//! ```text
//! cargo run -p im-examples --example cli-chat -- ws://127.0.0.1:8080/v1/ws
//! ```
//! and type `/register alice password123`, `/create lobby`, `/rooms`,
//! `/join 1`, `/dm bob`, text to send, `/quit`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:8080/v1/ws".into());
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    im_examples::cli::run(stdin, tokio::io::stdout(), url).await
}
