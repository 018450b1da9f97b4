//! A made-up protocol, `upper/1`, registered on a whole axum router.
//!
//! After the `101`, every line the client sends comes back uppercased. `GET /` is an
//! ordinary page; `/upper` exists only as an upgrade endpoint, so a plain `GET /upper` gets
//! `426 Upgrade Required`.
//!
//! ```text
//! cargo run --example custom_protocol
//! printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\nhello\n' \
//!     | nc 127.0.0.1 3001
//! ```
//!
//! The address comes from `ADDR` (default `127.0.0.1:3001`).

use axum::{Router, routing::get};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tower_upgrade::{Registry, UpgradeLayer, UpgradeRequest, UpgradedIo, handler_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_upgrade=debug".into()),
        )
        .init();

    let upper = handler_fn(
        "upper/1",
        |io: UpgradedIo, _req: UpgradeRequest| async move {
            let mut io = BufReader::new(io);
            let mut line = String::new();
            while io.read_line(&mut line).await? != 0 {
                io.get_mut()
                    .write_all(line.to_uppercase().as_bytes())
                    .await?;
                line.clear();
            }
            Ok::<_, std::io::Error>(())
        },
    );
    // One registry, shared: the whole router switches on `upper/1`, and `/upper` requires it.
    let registry = Registry::new().protocol(upper)?;

    let app = Router::new()
        .route(
            "/",
            get(|| async { "tower-upgrade custom protocol example: upgrade to upper/1\n" }),
        )
        .route(
            "/upper",
            get(|| async { "unreachable: the route requires an upgrade\n" })
                .layer(UpgradeLayer::with_registry(registry.clone()).require_upgrade()),
        )
        .layer(UpgradeLayer::with_registry(registry));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // `axum::serve` sleeps 1 s after an accept error (out of file descriptors), so it
    // neither spins nor floods the log; it sets no deadline for request heads. For one,
    // serve with hyper-util as `examples/echo.rs` does.
    axum::serve(listener, app).await?;
    Ok(())
}
