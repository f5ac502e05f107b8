//! A bare gRPC client of `im.v1.Chat/Connect`, for bad input: it sends
//! whatever bytes a test gives it.

use bytes::Bytes;
use im_client_sdk::TlsConfig;
use im_client_sdk::im_protocol::{self, Format, codec, grpc::CLOSE_CODE_METADATA, v1};
use im_protocol::grpc::chat_client::ChatClient;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

pub struct RawGrpc {
    up: mpsc::UnboundedSender<Bytes>,
    down: Streaming<Bytes>,
}

impl RawGrpc {
    /// With `tls`, over TLS trusting its roots.
    pub async fn connect(addr: SocketAddr, token: Option<&str>, tls: Option<&TlsConfig>) -> Self {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let channel = match tls {
            None => endpoint.connect().await.unwrap(),
            Some(tls) => {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let stream = tls.connect(&addr.ip().to_string(), tcp, &[b"h2"]).await.unwrap();
                let once = std::sync::Mutex::new(Some(hyper_util::rt::TokioIo::new(stream)));
                let connector = tower::service_fn(move |_: tonic::transport::Uri| {
                    let stream = once.lock().unwrap().take();
                    async move { stream.ok_or_else(|| std::io::Error::other("used once")) }
                });
                endpoint.connect_with_connector(connector).await.unwrap()
            }
        };
        let (up, rx) = mpsc::unbounded_channel();
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let mut client = ChatClient::new(channel).max_encoding_message_size(usize::MAX);
        let down = client.connect(request).await.unwrap().into_inner();
        Self { up, down }
    }

    pub fn send(&mut self, data: Vec<u8>) {
        let _ = self.up.send(Bytes::from(data));
    }

    /// gRPC carries binary frames: JSON is turned into its binary form, and
    /// text that is not a frame is sent as it is (bytes that are not one).
    pub fn send_json(&mut self, text: &str) {
        match codec::decode::<v1::ClientFrame>(text.as_bytes(), Format::Json, usize::MAX) {
            Ok(frame) => self.send(codec::encode(&frame, Format::Binary).to_vec()),
            Err(_) => self.send(text.as_bytes().to_vec()),
        }
    }

    /// The next server frame as canonical JSON (heartbeats skipped); panics
    /// if the stream ended.
    pub async fn next_json(&mut self) -> serde_json::Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.down.message()).await {
                Ok(Ok(Some(frame))) if frame.is_empty() => continue,
                Ok(Ok(Some(frame))) => {
                    let frame: v1::ServerFrame = codec::decode(&frame, Format::Binary, usize::MAX).unwrap();
                    return serde_json::to_value(&frame).unwrap();
                }
                Ok(Ok(None)) => panic!("stream ended"),
                Ok(Err(status)) => panic!("stream failed: {status:?}"),
                Err(_) => panic!("no frame"),
            }
        }
    }

    /// Reads until the server ends the stream; returns its close code.
    pub async fn closed(&mut self) -> Option<u16> {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match self.down.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return None,
                    Err(status) => {
                        return status
                            .metadata()
                            .get(CLOSE_CODE_METADATA)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok());
                    }
                }
            }
        })
        .await
        .expect("the server ends the stream")
    }
}

/// A plain HTTP/2 channel to a gRPC listener.
pub async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `message` with `authorization: Bearer <token>` metadata.
pub fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}
