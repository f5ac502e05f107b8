//! `grpc://host:port` and `grpcs://host:port` (TLS) URLs: the protocol
//! session over gRPC's `im.v1.Chat/Connect` stream (tonic, HTTP/2). Each
//! message is one encoded frame, exactly as on a WebSocket; an empty message
//! from the server is a heartbeat, answered with an empty one.

use super::{ConnectFuture, ConnectOptions, Connector, FrameChannel, FromServer, ToServer};
use crate::tls::{ALPN_H2, TlsConfig};
use crate::{Error, Result};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use im_protocol::Format;
use im_protocol::grpc::{CLOSE_CODE_METADATA, chat_client::ChatClient};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// How long connecting (TCP, HTTP/2 and the stream's start) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest server frame accepted (a history page of big messages fits).
const MAX_FRAME: usize = 16 << 20;

/// Connects `grpc://` and `grpcs://` URLs. Frames are always binary
/// protobuf on gRPC; `grpcs://` verifies the server with the client's
/// [`TlsConfig`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcConnector;

impl Connector for GrpcConnector {
    fn connect<'a>(&'a self, url: &'a str, options: &'a ConnectOptions) -> ConnectFuture<'a> {
        Box::pin(connect(url, options))
    }
}

/// Whether a URL is `grpc://` or `grpcs://`.
pub(crate) fn is_grpc_url(url: &str) -> bool {
    url.starts_with("grpc://") || url.starts_with("grpcs://")
}

/// `host:port` of a `grpc[s]://host:port[/...]` URL, and whether it is TLS.
fn authority(url: &str) -> Result<(&str, bool)> {
    let (rest, secure) = match (url.strip_prefix("grpc://"), url.strip_prefix("grpcs://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(Error::Connect(format!("{url}: not a grpc:// or grpcs:// URL"))),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(Error::Connect(format!("{url}: no host")));
    }
    Ok((authority, secure))
}

/// Opens an HTTP/2 channel to `url`'s host; over TLS for `grpcs://`,
/// verified with `tls` (a refused certificate is an [`Error::Tls`]).
async fn channel(url: &str, tls: &TlsConfig) -> Result<Channel> {
    let (authority, secure) = authority(url)?;
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| Error::Connect(format!("{url}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let connecting = async {
        if !secure {
            return endpoint
                .connect()
                .await
                .map_err(|e| Error::Connect(format!("{url}: {}", source_chain(&e))));
        }
        // The TLS session is opened here, so that a refused certificate is
        // reported as such; the channel then runs over it. Should the
        // channel need another connection it fails, and the client's
        // reconnect opens a new channel.
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| Error::Connect(format!("{url}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
        let stream = tls.connect(host, tcp, &[ALPN_H2]).await?;
        let once = std::sync::Mutex::new(Some(TokioIo::new(stream)));
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let stream = once.lock().ok().and_then(|mut s| s.take());
            async move { stream.ok_or_else(|| std::io::Error::other("the TLS connection is gone")) }
        });
        endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| Error::Connect(format!("{url}: {}", source_chain(&e))))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| Error::Connect(format!("{url}: timed out")))?
}

/// An error with its causes, which tonic keeps in the source chain.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn connect(url: &str, options: &ConnectOptions) -> Result<FrameChannel> {
    if options.format != Format::Binary {
        return Err(Error::Connect(format!(
            "{url}: gRPC carries binary frames; use Format::Binary"
        )));
    }
    let channel = channel(url, &options.tls).await?;
    let (up, up_rx) = mpsc::unbounded_channel::<Bytes>();
    let mut client = ChatClient::new(channel).max_decoding_message_size(MAX_FRAME);
    let response = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.connect(UnboundedReceiverStream::new(up_rx)),
    )
    .await
    .map_err(|_| Error::Connect(format!("{url}: timed out")))?
    .map_err(|status| Error::Connect(format!("{url}: {}", status.message())))?;
    let mut incoming = response.into_inner();
    let (to_server, mut outgoing) = mpsc::unbounded_channel::<ToServer>();
    let (from_tx, from_server) = mpsc::unbounded_channel::<FromServer>();
    tokio::spawn(async move {
        // `None` once the client closed its side of the stream.
        let mut up = Some(up);
        let (code, reason) = loop {
            tokio::select! {
                out = outgoing.recv(), if up.is_some() => match out {
                    Some(ToServer::Frame(frame)) => {
                        if let Some(up) = &up {
                            let _ = up.send(frame);
                        }
                    }
                    // Ending the request stream is the clean close; the
                    // server ends its side in turn.
                    Some(ToServer::Close) | None => up = None,
                },
                read = incoming.message() => match read {
                    Ok(Some(frame)) if frame.is_empty() => {
                        if let Some(up) = &up {
                            let _ = up.send(Bytes::new());
                        }
                    }
                    Ok(Some(frame)) => {
                        let _ = from_tx.send(FromServer::Frame(frame));
                    }
                    Ok(None) => break (None, "closed by server".to_owned()),
                    Err(status) => {
                        let code = status
                            .metadata()
                            .get(CLOSE_CODE_METADATA)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok());
                        break (code, status.message().to_owned());
                    }
                },
            }
        };
        let _ = from_tx.send(FromServer::Closed { code, reason });
    });
    Ok(FrameChannel {
        to_server,
        from_server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_is_the_host_and_port_of_a_grpc_url() {
        assert_eq!(
            authority("grpc://127.0.0.1:50051").unwrap(),
            ("127.0.0.1:50051", false)
        );
        assert_eq!(
            authority("grpcs://example.com:443/ignored").unwrap(),
            ("example.com:443", true)
        );
        assert!(authority("ws://127.0.0.1:1").is_err());
        assert!(authority("grpc://").is_err());
    }
}
