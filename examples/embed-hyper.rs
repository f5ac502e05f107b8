//! The chat inside a product's own hyper service (see `src/embed.rs`).
//!
//! Run: `cargo run -p im-examples --example embed-hyper`, then connect a
//! client to `ws://127.0.0.1:8090/chat` (e.g. the cli-chat example with
//! `IM_URL=ws://127.0.0.1:8090/chat`) and open http://127.0.0.1:8090/hello.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let engine = im_core::Engine::builder().build(); // in-memory: nothing kept
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
    println!("product on http://127.0.0.1:8090/hello, chat on ws://127.0.0.1:8090/chat");
    im_examples::embed::serve(listener, engine).await?;
    Ok(())
}
