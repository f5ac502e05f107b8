//! The chat WebSocket mounted in another hyper service works like the
//! reference server's.

use im_client_sdk::{Client, ClientConfig, Credentials, Event};
use std::time::Duration;

async fn register(url: &str, name: &str) -> (Client, im_client_sdk::Events) {
    let credentials = Credentials::Register {
        username: name.into(),
        password: "password123".into(),
        display_name: String::new(),
    };
    Client::connect(ClientConfig::new(url), credentials)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_through_a_product_that_mounts_the_websocket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let engine = im_core::Engine::builder()
        .password_auth(im_core::PasswordAuthConfig {
            argon2_m_cost: 256,
            argon2_t_cost: 1,
            ..Default::default()
        })
        .build();
    let server = tokio::spawn(im_examples::embed::serve(listener, engine));
    let url = format!("ws://{addr}/chat");
    let (ann, _) = register(&url, "ann").await;
    let (bob, mut bob_events) = register(&url, "bob").await;
    ann.send_direct(bob.user().id, "hi from inside the product")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::Message(m)) = bob_events.next().await {
                return m;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(got.content.unwrap().as_text(), Some("hi from inside the product"));
    server.abort();
}
