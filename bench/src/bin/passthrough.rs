//! Pass-through cost in user-space instructions: runs `N` ordinary requests through an
//! axum router, bare or behind the upgrade layer, with `oneshot` on one thread, and exits.
//! Counted with callgrind at `N` and `2N`, the difference over `N` is the cost of one
//! request, start-up cancelled out:
//!
//! ```text
//! cargo build --release -p tower-upgrade-bench
//! for app in bare layered wrapped; do for n in 20000 40000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/passthrough $app $n 2>&1 |
//!     grep 'Collected'
//! done; done
//! ```
//!
//! `bare`: the router; `layered`: `Router::layer(UpgradeLayer)` with two protocols
//! registered; `wrapped`: the layer around the whole router (as for h2c). The criterion
//! bench `cargo bench --bench upgrade -- pass_through` measures the same in CPU time.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use tower::{Layer, Service, ServiceExt};
use tower_upgrade::{UpgradeLayer, UpgradeRequest, UpgradedIo, handler_fn};

fn upgrade_layer() -> UpgradeLayer {
    UpgradeLayer::new()
        .protocol(handler_fn(
            "upper/1",
            |_io: UpgradedIo, _req: UpgradeRequest| async {},
        ))
        .unwrap()
        .protocol(handler_fn(
            "websocket",
            |_io: UpgradedIo, _req: UpgradeRequest| async {},
        ))
        .unwrap()
}

fn request() -> Request<Body> {
    Request::get("/")
        .header("host", "localhost")
        .header("user-agent", "bench")
        .header("accept", "*/*")
        .header("connection", "keep-alive")
        .body(Body::empty())
        .unwrap()
}

async fn run<S, B>(app: S, n: u64)
where
    S: Service<Request<Body>, Response = http::Response<B>, Error = Infallible> + Clone,
{
    for _ in 0..n {
        let res = app.clone().oneshot(request()).await.unwrap();
        std::hint::black_box(res);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(app), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("usage: passthrough bare|layered|wrapped N");
        std::process::exit(2);
    };
    let router = || Router::new().route("/", get(|| async { "hello" }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        match app.as_str() {
            "bare" => run(router(), n).await,
            "layered" => run(router().layer(upgrade_layer()), n).await,
            "wrapped" => run(upgrade_layer().layer(router()), n).await,
            other => {
                eprintln!("unknown app {other:?}");
                std::process::exit(2);
            }
        }
    });
}
