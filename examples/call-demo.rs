//! Two clients place a voice call through a server, send a generated audio
//! track and a data-channel message, print what arrives, and hang up.
//!
//! `cargo run -p im-examples --example call-demo -- [ws://HOST:PORT/v1/ws] [--calls N]`
//!
//! Without a URL it starts its own server on 127.0.0.1 (in-memory store).
//! The two clients register `caller` and `callee` on first use. With
//! `--calls N` it places N calls one after the other and prints the set-up
//! times (invite to a data channel open on both sides): the figure in
//! docs/PERFORMANCE.md.

use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut url = None;
    let mut calls = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" => {
                calls = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| anyhow::anyhow!("--calls takes a positive number"))?;
            }
            other => url = Some(other.to_owned()),
        }
    }
    let (url, _server) = match url {
        Some(url) => (url, None),
        None => {
            let (url, stop) = im_examples::call_demo::serve_in_process().await?;
            println!("started a server at {url}");
            (url, Some(stop))
        }
    };
    let mut setups: Vec<Duration> = Vec::with_capacity(calls);
    for i in 0..calls {
        let quiet = i > 0;
        let report = im_examples::call_demo::call(&url, ("caller", "callee"), "password123", |line| {
            if !quiet {
                println!("{line}");
            }
        })
        .await?;
        setups.push(report.setup);
    }
    if calls > 1 {
        setups.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| setups[((setups.len() - 1) as f64 * q).round() as usize];
        println!(
            "{calls} calls, set-up (invite to data channel open on both sides): min {:.1} ms, median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            ms(setups[0]),
            ms(at(0.5)),
            ms(at(0.9)),
            ms(setups[setups.len() - 1])
        );
    }
    Ok(())
}
