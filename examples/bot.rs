//! An echo bot: answers every text message it can see with its reverse.
//! `cargo run -p im-examples --example bot -- ws://127.0.0.1:8080/v1/ws echobot password123`
//! (registers the account on first run). Send it a DM, or add it to a group.
use im_client_sdk::{Client, ClientConfig, Credentials, Event};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080/v1/ws".into());
    let (user, pass) = (
        args.next().unwrap_or("echobot".into()),
        args.next().unwrap_or("password123".into()),
    );
    let config = ClientConfig::new(url);
    let login = Credentials::Login {
        username: user.clone(),
        password: pass.clone(),
    };
    let (bot, mut events) = match Client::connect(config.clone(), login).await {
        Ok(connected) => connected,
        Err(_) => {
            Client::connect(
                config,
                Credentials::Register {
                    username: user,
                    password: pass,
                    display_name: "Echo bot".into(),
                },
            )
            .await?
        }
    };
    let me = bot.user().id;
    println!("echo bot {} is listening", bot.user().username);
    let mut live = false; // do not answer the backlog delivered by the first sync
    while let Some(event) = events.next().await {
        match event {
            Event::Synced => live = true,
            Event::Message(m) if live && m.sender_id != me && m.sender_id != 0 => {
                if let Some(text) = m.content.as_ref().and_then(|c| c.as_text()) {
                    let reply: String = text.chars().rev().collect();
                    bot.send_text(m.conversation_id, &reply).await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
