//! Two bots that meet in a room over gRPC and talk, taking turns. The
//! `grpc-bots` example runs [`converse`] against a server; the test runs it
//! against a server it starts.

use im_client_sdk::{Client, ClientConfig, Credentials, Event, Events};
use std::time::Duration;

/// What each bot says, in turn: the first bot says the even lines.
const SCRIPT: [&str; 6] = [
    "Hello! Is this the room where the bots talk?",
    "It is. I came in over gRPC.",
    "So did I: one stream carries everything.",
    "Requests, responses and events, in order.",
    "And every message has its sequence number.",
    "Then we will never miss a word. Goodbye!",
];

/// Logs in, or registers on first use.
async fn sign_in(url: &str, username: &str, password: &str) -> anyhow::Result<(Client, Events)> {
    let config = ClientConfig::new(url);
    let login = Credentials::Login {
        username: username.into(),
        password: password.into(),
    };
    match Client::connect(config.clone(), login).await {
        Ok(connected) => Ok(connected),
        Err(_) => Ok(Client::connect(
            config,
            Credentials::Register {
                username: username.into(),
                password: password.into(),
                display_name: username.into(),
            },
        )
        .await?),
    }
}

/// The next text message in `room` from someone else.
async fn heard(events: &mut Events, room: u64, me: u64) -> anyhow::Result<(u64, String)> {
    let wait = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            if let Event::Message(m) = event
                && m.conversation_id == room
                && m.sender_id != me
                && let Some(text) = m.content.as_ref().and_then(|c| c.as_text())
            {
                return Some((m.seq, text.to_owned()));
            }
        }
        None
    });
    wait.await?.ok_or_else(|| anyhow::anyhow!("the client stopped"))
}

/// The two bots (`first` creates the room, `second` joins it) talk through
/// the script over the server at `url` (`grpc://host:port`). Each line is
/// passed to `print` as the listener received it: `#seq name: text`.
pub async fn converse(
    url: &str,
    (first, second): (&str, &str),
    password: &str,
    mut print: impl FnMut(String),
) -> anyhow::Result<()> {
    let (a, mut a_events) = sign_in(url, first, password).await?;
    let (b, mut b_events) = sign_in(url, second, password).await?;
    let room = a.create_room(&format!("{first} and {second}"), true).await?;
    b.join(room.id).await?;
    print(format!("{first} created room {} and {second} joined it", room.id));
    for (turn, line) in SCRIPT.iter().enumerate() {
        let (speaker, speaker_name, listener, listener_events) = if turn % 2 == 0 {
            (&a, first, &b, &mut b_events)
        } else {
            (&b, second, &a, &mut a_events)
        };
        speaker.send_text(room.id, line).await?;
        let (seq, text) = heard(listener_events, room.id, listener.user().id).await?;
        print(format!("#{seq} {speaker_name}: {text}"));
    }
    a.leave(room.id).await?;
    b.leave(room.id).await?;
    a.close();
    b.close();
    Ok(())
}
