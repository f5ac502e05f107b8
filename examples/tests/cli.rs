//! Drives the terminal client (the code behind `cli-chat`) against a real server.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct Session {
    input: tokio::io::DuplexStream,
    output: tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Session {
    fn start(url: &str) -> Self {
        let (input, cli_in) = tokio::io::duplex(64 * 1024);
        let (cli_out, output) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(im_examples::cli::run(
            BufReader::new(cli_in),
            cli_out,
            url.to_owned(),
        ));
        Self {
            input,
            output: BufReader::new(output).lines(),
            task,
        }
    }

    async fn type_line(&mut self, line: &str) {
        self.input
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// Reads output lines until one contains `needle`.
    async fn expect(&mut self, needle: &str) -> String {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let line = self.output.next_line().await.unwrap().expect("cli output ended");
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line containing {needle:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_terminal_users_chat_in_a_room_and_directly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = im_server::ServerConfig::default();
    config.server.listen = "127.0.0.1:0".into();
    config.grpc.listen = "127.0.0.1:0".into();
    config.store.url = format!("sqlite://{}", dir.path().join("im.sqlite3").display());
    config.auth.argon2_m_cost = 256;
    config.auth.argon2_t_cost = 1;
    let server = im_server::Server::bind(config).await.unwrap();
    let url = format!("ws://{}/v1/ws", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let mut alice = Session::start(&url);
    let mut bob = Session::start(&url);
    alice.type_line("/register alice password123").await;
    alice.expect("signed in as alice").await;
    bob.type_line("/register bob password123").await;
    bob.expect("signed in as bob").await;

    alice.type_line("/create lobby").await;
    let created = alice.expect("created room #").await;
    let room: u64 = created
        .split('#')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    bob.type_line("/rooms").await;
    bob.expect("lobby (1 members)").await;
    bob.type_line(&format!("/join {room}")).await;
    bob.expect("joined #").await;
    alice.expect("* bob joined").await;
    bob.type_line("hello everyone").await;
    alice.expect("bob: hello everyone").await;

    alice.type_line("/dm bob").await;
    alice.expect("talking to bob").await;
    alice.type_line("psst").await;
    bob.expect("alice: psst").await;
    bob.type_line("/users al").await;
    bob.expect("alice (alice)").await;
    bob.type_line(&format!("/join {room}")).await;
    bob.type_line("/history").await;
    bob.expect("bob: hello everyone").await;
    bob.type_line("/leave").await;
    bob.expect("left #").await;
    alice.expect("* bob left").await;
    bob.type_line("/nonsense").await;
    bob.expect("! unknown command").await;

    alice.type_line("/quit").await;
    bob.type_line("/quit").await;
    alice.task.await.unwrap().unwrap();
    bob.task.await.unwrap().unwrap();
    stop.send(()).unwrap();
    server_task.await.unwrap().unwrap();
}
