//! A terminal chat client.
//!
//! Run a server (`cargo run -p im-server`), then in two terminals:
//! ```text
//! cargo run -p im-examples --example cli-chat -- ws://127.0.0.1:8080/v1/ws
//! ```
//! and type `/register alice password123`, `/create lobby`, `/rooms`,
//! `/join 1`, `/dm bob`, text to send, `/quit`. Any URL the SDK speaks
//! works: `wss://…`, `grpc://127.0.0.1:50051`, `grpcs://…`; for a server
//! whose certificate comes from a private CA, add `--ca ca.pem`.

use im_client_sdk::{ClientConfig, TlsConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut url = "ws://127.0.0.1:8080/v1/ws".to_owned();
    let mut tls = TlsConfig::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca" => {
                let file = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--ca needs a PEM file"))?;
                tls = tls.add_root_file(file);
            }
            _ => url = arg,
        }
    }
    let mut config = ClientConfig::new(url);
    config.tls = tls;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    im_examples::cli::run(stdin, tokio::io::stdout(), config).await
}
