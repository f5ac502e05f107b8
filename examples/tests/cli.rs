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
            im_client_sdk::ClientConfig::new(url),
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

    /// Reads output lines until one contains `needle`, none containing
    /// `never`; returns them.
    async fn expect_before(&mut self, needle: &str, never: &str) -> Vec<String> {
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let line = self.output.next_line().await.unwrap().expect("cli output ended");
                assert!(!line.contains(never), "{line:?} before {needle:?}");
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line containing {needle:?}"));
        seen
    }
}

/// A reference server on 127.0.0.1 with a SQLite file in a temporary
/// directory, stopped by [`Running::stop`].
struct Running {
    url: String,
    dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), im_server::ServerError>>,
}

impl Running {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = im_server::ServerConfig::default();
        config.server.listen = "127.0.0.1:0".into();
        config.grpc.listen = "127.0.0.1:0".into();
        config.store.url = format!("sqlite://{}", dir.path().join("im.sqlite3").display());
        config.files.dir = dir.path().join("files").display().to_string();
        config.auth.argon2_m_cost = 256;
        config.auth.argon2_t_cost = 1;
        let server = im_server::Server::bind(config).await.unwrap();
        let url = format!("ws://{}/v1/ws", server.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self { url, dir, stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_terminal_users_chat_in_a_room_and_directly() {
    let server = Running::start().await;
    let url = server.url.clone();

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
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_users_send_list_and_download_files() {
    let server = Running::start().await;
    let url = server.url.clone();
    let dir = &server.dir;
    let photo = dir.path().join("my photo.png");
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend((0..100_000u32).map(|i| (i * 7 % 251) as u8));
    std::fs::write(&photo, &png).unwrap();

    let mut alice = Session::start(&url);
    let mut bob = Session::start(&url);
    alice.type_line("/register alice password123").await;
    alice.expect("signed in as alice").await;
    bob.type_line("/register bob password123").await;
    bob.expect("signed in as bob").await;
    bob.type_line("/files").await;
    bob.expect("no files received yet").await;

    alice.type_line("/dm bob").await;
    alice.expect("talking to bob").await;
    alice.type_line(&format!("/file {}", photo.display())).await;
    let sent = alice.expect("sent my photo.png").await;
    assert!(sent.contains("(100016 bytes, image/png)"), "{sent}");
    let shown = bob.expect("alice sent my photo.png").await;
    let id = shown
        .split("/download ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    bob.type_line("/files").await;
    bob.expect(&format!("{id} my photo.png (100016 bytes, image/png) from alice"))
        .await;
    let target = dir.path().join("copy.png");
    bob.type_line(&format!("/download {id} {}", target.display()))
        .await;
    bob.expect("downloaded 100016 bytes").await;
    assert_eq!(std::fs::read(&target).unwrap(), png);
    let nowhere = dir.path().join("nothing");
    bob.type_line(&format!(
        "/download 0123456789abcdef0123456789abcdef {}",
        nowhere.display()
    ))
    .await;
    bob.expect("! NotFound").await;
    assert!(!nowhere.exists(), "a failed download leaves no file");
    alice.type_line("/file /no/such/file").await;
    alice.expect("! i/o").await;

    alice.type_line("/quit").await;
    bob.type_line("/quit").await;
    alice.task.await.unwrap().unwrap();
    bob.task.await.unwrap().unwrap();
    server.stop().await;
}

/// The message id (`m123`) in a line the client printed.
fn message_id(line: &str) -> String {
    line.split("(m")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no message id in {line:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_users_reply_edit_react_recall_and_search() {
    let server = Running::start().await;
    let url = server.url.clone();

    let mut alice = Session::start(&url);
    let mut bob = Session::start(&url);
    alice.type_line("/register alice password123").await;
    alice.expect("signed in as alice").await;
    bob.type_line("/register bob password123").await;
    bob.expect("signed in as bob").await;
    alice.type_line("/group team bob").await;
    alice.expect("created group #").await;
    alice.type_line("lunch at noon?").await;
    let line = bob.expect("alice: lunch at noon?").await;
    let id = message_id(&line);
    bob.type_line(&format!("/reply m{id} sure, see you")).await;
    alice.expect("bob: sure, see you").await;
    bob.type_line(&format!("/react m{id} 👍")).await;
    alice.expect("lunch at noon? 👍1").await;
    alice.type_line(&format!("/edit m{id} lunch at one?")).await;
    bob.expect("lunch at one? (edited) 👍1").await;
    bob.type_line("/search LUNCH").await;
    bob.expect("alice: lunch at one?").await;
    alice.type_line(&format!("/recall m{id}")).await;
    bob.expect(&format!("(m{id}) recalled by alice")).await;
    bob.type_line("/search lunch").await;
    bob.expect("no message found").await;
    bob.type_line("/edit m1 nope").await;
    bob.expect("! ").await;

    alice.type_line("/quit").await;
    bob.type_line("/quit").await;
    alice.task.await.unwrap().unwrap();
    bob.task.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_owner_invites_mutes_and_kicks() {
    let server = Running::start().await;
    let url = server.url.clone();

    let mut alice = Session::start(&url);
    let mut bob = Session::start(&url);
    alice.type_line("/register alice password123").await;
    alice.expect("signed in as alice").await;
    bob.type_line("/register bob password123").await;
    bob.expect("signed in as bob").await;

    alice.type_line("/group club").await;
    let created = alice.expect("created group #").await;
    let group: u64 = created
        .split('#')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    alice.type_line("/invite bob").await;
    bob.expect(&format!("alice invited you to #{group} club")).await;
    bob.type_line(&format!("/accept {group}")).await;
    bob.expect(&format!("joined #{group}")).await;
    alice.expect("* bob joined").await;

    alice.type_line("/mute bob").await;
    bob.expect("* alice muted bob").await;
    bob.type_line("can I talk?").await;
    bob.expect("! PermissionDenied").await;
    alice.type_line("/members").await;
    alice.expect("bob (ROLE_MEMBER, muted)").await;
    alice.type_line("/mute bob 0").await;
    bob.expect("* alice unmuted bob").await;

    alice.type_line("/kick bob").await;
    bob.expect("* alice removed bob").await;
    bob.expect(&format!("you are no longer in #{group}")).await;
    bob.type_line(&format!("/join {group}")).await;
    bob.expect("! PermissionDenied").await;

    alice.type_line("/quit").await;
    bob.type_line("/quit").await;
    alice.task.await.unwrap().unwrap();
    bob.task.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_users_befriend_and_block() {
    let server = Running::start().await;
    let url = server.url.clone();

    let mut alice = Session::start(&url);
    let mut bob = Session::start(&url);
    let mut mallory = Session::start(&url);
    for (s, name) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut mallory, "mallory"),
    ] {
        s.type_line(&format!("/register {name} password123")).await;
        s.expect(&format!("signed in as {name}")).await;
    }
    // Friends: asked, then asked back (which accepts).
    alice.type_line("/friend bob hi from alice").await;
    alice.expect("friend request sent to bob").await;
    bob.expect("* alice asks bob to be friends: hi from alice").await;
    bob.type_line("/friend alice").await;
    bob.expect("you and alice are friends").await;
    alice.expect("* bob and alice are friends").await;
    alice.type_line("/friends").await;
    alice.expect("friend bob").await;

    // Bob blocks Mallory: her direct messages are refused, her group
    // messages reach Alice but Bob only as deleted.
    alice.type_line("/group three bob mallory").await;
    alice.expect("created group #").await;
    mallory.expect("created three").await;
    bob.expect("created three").await;
    alice.type_line("welcome").await;
    let welcome = message_id(&mallory.expect("alice: welcome").await);
    bob.expect("alice: welcome").await;
    bob.type_line("/block mallory").await;
    bob.expect("blocked mallory").await;
    bob.type_line("/blocked").await;
    bob.expect("blocked mallory").await;
    mallory
        .type_line(&format!("/reply m{welcome} nobody hears me?"))
        .await;
    alice.expect("mallory: nobody hears me?").await;
    alice.type_line("alice speaks").await;
    let shown = bob
        .expect_before("alice: alice speaks", "mallory: nobody hears me?")
        .await;
    assert!(shown.iter().any(|l| l.contains("(deleted)")), "{shown:?}");
    mallory.type_line("/dm bob").await;
    mallory.expect("talking to bob").await;
    mallory.type_line("let me in").await;
    mallory
        .expect("! PermissionDenied: cannot message this user")
        .await;

    bob.type_line("/unblock mallory").await;
    bob.expect("unblocked mallory").await;
    mallory.type_line(&format!("/reply m{welcome} hello again")).await;
    bob.expect("mallory: hello again").await;

    for s in [&mut alice, &mut bob, &mut mallory] {
        s.type_line("/quit").await;
    }
    alice.task.await.unwrap().unwrap();
    bob.task.await.unwrap().unwrap();
    mallory.task.await.unwrap().unwrap();
    server.stop().await;
}
