//! h2c: HTTP/1.1 upgraded to HTTP/2 on the same connection, on a whole axum router.
//!
//! `GET /` is a small text page and `POST /echo` answers with the request body. A client
//! that offers `Upgrade: h2c` gets `101 Switching Protocols`, its request answered on
//! HTTP/2 stream 1, and HTTP/2 for every later request on the connection.
//!
//! ```text
//! cargo run --example h2c
//! curl --http2 -v http://127.0.0.1:3002/
//! curl --http2 --data-binary @Cargo.toml http://127.0.0.1:3002/echo
//! nghttp -uv http://127.0.0.1:3002/ http://127.0.0.1:3002/
//! .ci/h2c.sh 127.0.0.1:3002
//! ```
//!
//! The address comes from `ADDR` (default `127.0.0.1:3002`).

use axum::{
    Router,
    body::Bytes,
    response::IntoResponse,
    routing::{get, post},
};
use tower::Layer;
use tower_upgrade::{UpgradeLayer, h2c::H2c};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_upgrade=debug".into()),
        )
        .init();

    let router = Router::new()
        .route(
            "/",
            get(|| async {
                "tower-upgrade h2c example: this page works over HTTP/1.1 and HTTP/2\n"
            }),
        )
        .route("/echo", post(|body: Bytes| async move { body }));
    // The layer wraps the whole router: after the switch, every HTTP/2 request on the
    // connection is routed again. (`Router::layer` would wrap each route on its own.)
    let app = UpgradeLayer::new().protocol(H2c::new())?.layer(router);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // `axum::serve` takes services that answer with axum's body: map the layer's response
    // body into it (what `Router::layer` does for layers inside the router).
    let app =
        tower::ServiceExt::<axum::extract::Request>::map_response(app, IntoResponse::into_response);
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    // `axum::serve` sleeps 1 s after an accept error (out of file descriptors), so it
    // neither spins nor floods the log; it sets no deadline for request heads. For one,
    // serve with hyper-util as `examples/echo.rs` does.
    axum::serve(listener, app).await?;
    Ok(())
}
