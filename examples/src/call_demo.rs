//! Two clients in one process call each other through a server: the caller
//! sends a generated audio track (20 ms Opus silence frames) and a
//! data-channel message, the callee reports what arrives, then the caller
//! hangs up. The `call-demo` example runs [`call`] against a server (its own
//! in-process one from [`serve_in_process`] if no URL is given); the test
//! runs it too.
//!
//! Both clients live in this process, so their peer connections use host
//! candidates on 127.0.0.1 only ([`CallConfig::loopback`]): nothing but the
//! signalling goes to the server.

use bytes::Bytes;
use im_client_sdk::calls::{CallConfig, CallEvent, CallEvents, Calls, DataChannel, RemoteTrack, TrackKind};
use im_client_sdk::{Client, ClientConfig, Credentials, v1};
use std::time::{Duration, Instant};

/// How long any step may take.
const STEP: Duration = Duration::from_secs(20);

/// The audio the caller sends: this many 20 ms frames.
pub const FRAMES: usize = 50;

/// An Opus packet that decodes to 20 ms of silence (CELT, full band).
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

/// What one call showed.
#[derive(Debug, Clone)]
pub struct Report {
    /// From the invite to a data channel open on both sides.
    pub setup: Duration,
    /// RTP packets of the caller's audio the callee received.
    pub rtp_packets: usize,
    /// The caller's data-channel message as the callee got it.
    pub message: String,
    /// The callee's answer as the caller got it.
    pub reply: String,
}

/// Starts a reference server on 127.0.0.1 with an in-memory store, and
/// returns its WebSocket URL and a sender that stops it.
pub async fn serve_in_process() -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let mut config = im_server::ServerConfig::default();
    config.server.listen = "127.0.0.1:0".into();
    config.grpc.listen = "127.0.0.1:0".into();
    config.store.url = "memory://".into();
    config.files.dir = "memory://".into();
    // Demo accounts: a cheap password hash.
    config.auth.argon2_m_cost = 256;
    config.auth.argon2_t_cost = 1;
    let server = im_server::Server::bind(config).await?;
    let url = format!("ws://{}/v1/ws", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Ok((url, stop))
}

/// Logs in, or registers on first use.
async fn sign_in(url: &str, username: &str, password: &str) -> anyhow::Result<Client> {
    let config = ClientConfig::new(url);
    let login = Credentials::Login {
        username: username.into(),
        password: password.into(),
    };
    let (client, _events) = match Client::connect(config.clone(), login).await {
        Ok(connected) => connected,
        Err(_) => {
            let register = Credentials::Register {
                username: username.into(),
                password: password.into(),
                display_name: username.into(),
            };
            Client::connect(config, register).await?
        }
    };
    Ok(client)
}

/// A client's call events, with those not asked for yet kept for later.
struct Inbox {
    events: CallEvents,
    kept: Vec<CallEvent>,
}

impl Inbox {
    /// The first call event `pick` accepts, within [`STEP`].
    async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&CallEvent) -> Option<T>,
    ) -> anyhow::Result<T> {
        if let Some(i) = self.kept.iter().position(|e| pick(e).is_some()) {
            let event = self.kept.remove(i);
            return Ok(pick(&event).expect("picked just now"));
        }
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .map_err(|_| anyhow::anyhow!("no {what} within {STEP:?}"))?
                .ok_or_else(|| anyhow::anyhow!("the calls manager stopped before {what}"))?;
            if let CallEvent::Error { error, .. } = &event {
                anyhow::bail!("while waiting for {what}: {error}");
            }
            match pick(&event) {
                Some(t) => return Ok(t),
                None => self.kept.push(event),
            }
        }
    }
}

fn channel(event: &CallEvent) -> Option<DataChannel> {
    match event {
        CallEvent::DataChannel { channel, .. } => Some(channel.clone()),
        _ => None,
    }
}

async fn text(channel: &DataChannel) -> anyhow::Result<String> {
    let message = tokio::time::timeout(STEP, channel.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the data channel closed"))?;
    Ok(String::from_utf8_lossy(&message.data).into_owned())
}

/// Counts the RTP packets of `track` until `FRAMES` arrived or the sender
/// has been quiet for a second.
async fn count_packets(track: RemoteTrack) -> usize {
    let mut n = 0;
    while n < FRAMES {
        match tokio::time::timeout(Duration::from_secs(1), track.recv()).await {
            Ok(Some(_)) => n += 1,
            _ => break,
        }
    }
    n
}

/// One call between `caller` and `callee` (registered on first use) over the
/// server at `url`; each step is passed to `print`.
pub async fn call(
    url: &str,
    (caller, callee): (&str, &str),
    password: &str,
    mut print: impl FnMut(String),
) -> anyhow::Result<Report> {
    let a = sign_in(url, caller, password).await?;
    let b = sign_in(url, callee, password).await?;
    let config = CallConfig {
        data_channel: Some("demo".into()),
        ..CallConfig::loopback()
    };
    let (a_calls, events) = Calls::new(&a, config.clone());
    let mut a_events = Inbox {
        events,
        kept: Vec::new(),
    };
    let (b_calls, events) = Calls::new(&b, config);
    let mut b_events = Inbox {
        events,
        kept: Vec::new(),
    };
    let conversation = a
        .create_group(&format!("{caller} and {callee}"), &[b.user().id])
        .await?;

    let started = Instant::now();
    let media = v1::CallMedia {
        audio: true,
        video: false,
        screen: false,
    };
    let placed = a_calls.start(conversation.id, &[b.user().id], media).await?;
    let mic = a_calls.add_track(placed.call_id, TrackKind::Audio).await?;
    print(format!("{caller} calls {callee} (call {})", placed.call_id));
    let (call_id, from) = b_events
        .expect("the incoming call", |e| match e {
            CallEvent::Incoming { call_id, from, .. } => Some((*call_id, from.clone())),
            _ => None,
        })
        .await?;
    print(format!(
        "{callee}'s phone rings: call {call_id} from user {}",
        from.user_id
    ));
    b_calls.accept(call_id).await?;
    let b_channel = b_events.expect("the callee's data channel", channel).await?;
    let a_channel = a_events.expect("the caller's data channel", channel).await?;
    let setup = started.elapsed();
    print(format!(
        "connected; data channel {:?} open on both sides {:.1} ms after the invite",
        a_channel.label(),
        setup.as_secs_f64() * 1000.0
    ));

    let heard = tokio::spawn(async move {
        let track = b_events
            .expect("the caller's audio", |e| match e {
                CallEvent::RemoteTrack { track, .. } => Some(track.clone()),
                _ => None,
            })
            .await?;
        anyhow::Ok((count_packets(track).await, b_events))
    });
    for _ in 0..FRAMES {
        mic.write_sample(Bytes::from_static(&OPUS_SILENCE), Duration::from_millis(20))
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (rtp_packets, mut b_events) = heard.await??;
    print(format!(
        "{callee} received {rtp_packets} RTP packets of {FRAMES} audio frames sent"
    ));

    a_channel
        .send_text(&format!("hello {callee}, this is {caller}"))
        .await?;
    let message = text(&b_channel).await?;
    print(format!("{callee} got on the data channel: {message:?}"));
    b_channel
        .send_text(&format!("hi {caller}, loud and clear"))
        .await?;
    let reply = text(&a_channel).await?;
    print(format!("{caller} got on the data channel: {reply:?}"));

    a_calls.hang_up(call_id).await?;
    b_events
        .expect("the end of the call", |e| match e {
            CallEvent::Ended { reason, .. } => Some(*reason),
            _ => None,
        })
        .await?;
    print(format!("{caller} hung up; the call is over for {callee}"));
    a.close();
    b.close();
    Ok(Report {
        setup,
        rtp_packets,
        message,
        reply,
    })
}
