//! A product's own hyper service with the chat mounted inside it: its own
//! routes, plus the chat WebSocket at `/chat`, served by the engine's session
//! driver through `im_server::websocket`. No reference server involved.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use im_core::{ConnectionConfig, Engine};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves the product on `listener` until the process ends: `GET /hello`
/// is the product's own route, `GET /chat` the chat protocol.
pub async fn serve(listener: TcpListener, engine: Engine) -> std::io::Result<()> {
    let config = Arc::new(ConnectionConfig::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let (engine, config) = (engine.clone(), config.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (engine, config) = (engine.clone(), config.clone());
                async move { Ok::<_, std::convert::Infallible>(route(req, engine, config)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

fn route(
    mut req: Request<hyper::body::Incoming>,
    engine: Engine,
    config: Arc<ConnectionConfig>,
) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/hello" => Response::new(Full::new(Bytes::from_static(b"the product's own page\n"))),
        "/chat" => match im_server::websocket::upgrade(&mut req, engine, config, std::future::pending()) {
            Ok((response, serve_chat)) => {
                tokio::spawn(serve_chat);
                response
            }
            Err(e) => status(StatusCode::BAD_REQUEST, e.to_string()),
        },
        _ => status(StatusCode::NOT_FOUND, "no such page".into()),
    }
}

fn status(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response
}
