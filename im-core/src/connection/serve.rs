//! [`serve`]: runs one connection by driving a [`SessionDriver`] over a
//! [`FrameTransport`]. The only async loop of the protocol; a transport
//! supplies bytes and writes, nothing else.

use super::ConnectionConfig;
use super::driver::{Close, SessionDriver, Transmit, TransportError};
use super::requests::{Connection, Outcome};
use crate::engine::Engine;
use crate::sessions::{Outbound, SessionEvents};
use bytes::Bytes;
use im_protocol::{Format, v1};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Events written per flush at most.
const MAX_BATCH: usize = 64;

/// Longest a flush may wait for the client to read. A client that stops
/// reading is disconnected instead of pinning its session.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a transport reads from its client.
#[derive(Debug)]
pub enum Incoming {
    /// A protocol frame and the format it came in.
    Frame(Bytes, Format),
    /// Anything else that shows the client is alive (a pong).
    Activity,
}

/// Bytes to frames and writes: all a transport implements. Reading must be
/// cancel-safe (`serve` drops a pending read to write events).
pub trait FrameTransport: Send {
    /// The next input; `None` when the client closed the connection.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, TransportError>>> + Send;
    /// Queues a frame or a ping for writing (may write when buffers fill).
    fn feed(&mut self, transmit: Transmit) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Writes everything fed so far.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Says goodbye with this reason (or just ends when `None`), and waits
    /// briefly for the client's side of the close.
    fn close(&mut self, close: Option<Close>) -> impl Future<Output = ()> + Send;
}

/// A request being handled: owns the connection state until it is done.
/// Boxed, and its output too, so an idle connection holds no room for it.
type InFlight = Pin<Box<dyn Future<Output = Box<(Connection, Outcome)>> + Send>>;

fn start(mut conn: Connection, frame: v1::ClientFrame) -> InFlight {
    Box::pin(async move {
        let outcome = conn.handle(frame).await;
        Box::new((conn, outcome))
    })
}

async fn in_flight_done(in_flight: &mut Option<InFlight>) -> Box<(Connection, Outcome)> {
    match in_flight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn next_event(events: &mut Option<SessionEvents>) -> Option<Outbound> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
    }
}

/// Serves one client connection until it closes: the same protocol on every
/// transport. `bearer_token` is what the transport learned before the first
/// frame (the HTTP `Authorization` header, gRPC metadata); `shutdown`
/// completes when the server stops, and the client is then told to come back.
///
/// ```no_run
/// # async fn demo<T: im_core::connection::FrameTransport>(engine: im_core::Engine, transport: T) {
/// use im_core::connection::{ConnectionConfig, serve};
/// use std::sync::Arc;
/// serve(engine, Arc::new(ConnectionConfig::default()), transport, None, std::future::pending()).await;
/// # }
/// ```
pub fn serve<T: FrameTransport>(
    engine: Engine,
    config: Arc<ConnectionConfig>,
    transport: T,
    bearer_token: Option<String>,
    shutdown: impl Future<Output = ()> + Send,
) -> impl Future<Output = ()> + Send {
    // Built before the future, and borrowed by it: an idle connection holds
    // its transport, driver and state once (an `async fn` would keep a
    // second, dead copy of every argument).
    let mut parts = Parts {
        driver: SessionDriver::new(config.clone(), Instant::now()),
        conn: Some(Connection::new(engine, config, bearer_token)),
        transport,
    };
    async move {
        // `parts` is used where it was captured: moving it to a local would
        // store it twice.
        let mut shutdown = std::pin::pin!(shutdown);
        run(&mut parts, shutdown.as_mut()).await;
        if let Some(conn) = parts.conn.take() {
            // Boxed: it runs once, its future need not live in every idle connection.
            Box::pin(conn.close()).await;
        }
    }
}

/// What a connection owns for its whole life.
struct Parts<T> {
    driver: SessionDriver,
    /// The request state; inside the request future while one runs.
    conn: Option<Connection>,
    transport: T,
}

async fn run<T: FrameTransport>(
    parts: &mut Parts<T>,
    mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
) {
    let Parts {
        driver,
        conn,
        transport,
    } = parts;
    let mut in_flight: Option<InFlight> = None;
    let mut events: Option<SessionEvents> = None;
    let mut shutting_down = false;
    let mut dead = false;
    // One timer for the connection's life, moved when the driver's next
    // time-out moves: a timer made per wake-up would cost more than the write.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
    let mut close = None;

    loop {
        if let Some(frame) = driver.next_request(Instant::now()) {
            let c = conn.take().expect("no request is in flight");
            in_flight = Some(start(c, frame));
        }
        if !dead {
            match write(transport, driver).await {
                Ok(goodbye) => close = goodbye.or(close),
                Err(()) => {
                    dead = true;
                    driver.handle_write_failed();
                    continue;
                }
            }
        }
        if driver.is_closed() {
            break;
        }
        let open = driver.is_open();
        let deadline = driver.poll_timeout();
        if let Some(d) = deadline
            && timer.deadline() != d
        {
            timer.as_mut().reset(d);
        }
        tokio::select! {
            biased;
            _ = shutdown.as_mut(), if !shutting_down => {
                shutting_down = true;
                driver.shutdown();
            }
            done = in_flight_done(&mut in_flight) => {
                in_flight = None;
                let (c, outcome) = *done;
                *conn = Some(c);
                let mut outcome = outcome;
                if let Some(session) = outcome.session.take() {
                    events = Some(session);
                }
                driver.request_done(Instant::now(), &outcome);
            }
            incoming = transport.recv(), if !dead && driver.wants_input() => match incoming {
                Some(Ok(Incoming::Frame(data, format))) => driver.handle_frame(Instant::now(), &data, format),
                Some(Ok(Incoming::Activity)) => driver.handle_activity(Instant::now()),
                Some(Err(e)) => driver.handle_transport_error(&e),
                None => {
                    dead = true;
                    driver.handle_peer_closed();
                }
            },
            out = next_event(&mut events), if open => {
                let mut item = out;
                let mut n = 0;
                while let Some(i) = item.take() {
                    driver.handle_event(i);
                    n += 1;
                    if n < MAX_BATCH {
                        item = events.as_mut().and_then(SessionEvents::try_recv);
                    }
                }
                if events.as_ref().is_some_and(SessionEvents::overflowed) {
                    driver.handle_overflow();
                }
            }
            _ = &mut timer, if open && deadline.is_some() => driver.handle_timeout(Instant::now()),
        }
    }
    if let Some(goodbye) = close.filter(|_| !dead) {
        // Boxed: it runs once, its future need not live in every idle connection.
        let _ = Box::pin(tokio::time::timeout(WRITE_TIMEOUT, transport.close(goodbye))).await;
    }
}

/// Writes the frames the driver queued with one flush, within
/// [`WRITE_TIMEOUT`]. `Ok(Some(close))` when the driver's last word, the
/// close, was reached (the caller says it once the loop ends); `Err` if the
/// transport failed or the client stopped reading.
async fn write<T: FrameTransport>(
    transport: &mut T,
    driver: &mut SessionDriver,
) -> Result<Option<Option<Close>>, ()> {
    if !driver.has_transmits() {
        return Ok(None);
    }
    let work = async {
        let (mut fed, mut close) = (false, None);
        while let Some(t) = driver.poll_transmit() {
            match t {
                Transmit::Close(c) => {
                    close = Some(c);
                    break;
                }
                t => {
                    transport.feed(t).await?;
                    fed = true;
                }
            }
        }
        if fed {
            transport.flush().await?;
        }
        Ok::<_, TransportError>(close)
    };
    match tokio::time::timeout(WRITE_TIMEOUT, work).await {
        Ok(Ok(close)) => Ok(close),
        _ => Err(()),
    }
}
