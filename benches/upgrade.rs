//! Criterion benchmarks: the pass-through cost of the layer, and the header parsing.
//!
//! ```text
//! cargo bench --bench upgrade
//! ```
//!
//! `pass_through/*` sends the same non-upgrade request through a bare axum router, through
//! the same router with a layer that does nothing (`tower::layer::util::Identity`), and
//! through the same router with the layer, and prints the ratios of the medians.
//! `Router::layer` boxes every route it wraps, whatever the layer: `layered / noop_layer`
//! is the cost of this crate's layer alone, `layered / bare` what a user of axum sees.

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BatchSize, Criterion, criterion_group};
use http::Request;
use tower::ServiceExt;
use tower_upgrade::{UpgradeLayer, UpgradeRequest, UpgradedIo, handler_fn};

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn layered() -> Router {
    router().layer(upgrade_layer())
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

/// One request through `app`, the service cloned per request as hyper does per connection.
fn bench_app<S, B>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    app: &S,
) where
    S: tower::Service<
            Request<Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone,
{
    group.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || (app.clone(), request()),
            |(app, req)| async move { black_box(app.oneshot(req).await.unwrap()) },
            BatchSize::SmallInput,
        );
    });
}

fn pass_through(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("pass_through");
    // `Router::layer` wraps every route, and axum boxes each wrapped route whatever the
    // layer: `noop_layer` measures that cost alone.
    bench_app(&mut group, &rt, "bare", &router());
    bench_app(
        &mut group,
        &rt,
        "noop_layer",
        &router().layer(tower::layer::util::Identity::new()),
    );
    bench_app(&mut group, &rt, "layered", &layered());
    // The layer around the whole router (as for h2c): no boxing by axum.
    bench_app(
        &mut group,
        &rt,
        "wrapped",
        &tower::Layer::layer(&upgrade_layer(), router()),
    );
    group.finish();
}

fn classify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = layered();
    // An upgrade request for a protocol nobody registered: parses both lists, then passes.
    let req = || {
        Request::get("/")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "foo/2, bar, baz/1.1")
            .body(Body::empty())
            .unwrap()
    };
    c.bench_function("classify/unmatched_upgrade", |b| {
        b.to_async(&rt).iter_batched(
            || (app.clone(), req()),
            |(app, req)| async move { black_box(app.oneshot(req).await.unwrap()) },
            BatchSize::SmallInput,
        );
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = pass_through, classify
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratio();
}

/// Reads criterion's estimates for the two pass-through runs and prints their ratio.
fn print_ratio() {
    // Where criterion writes: $CRITERION_HOME, else the target directory's `criterion`.
    let home = std::env::var_os("CRITERION_HOME").map_or_else(
        || std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../criterion"),
        std::path::PathBuf::from,
    );
    let dir = home.join("pass_through");
    let median = |name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(dir.join(name).join("new/estimates.json")).ok()?;
        let at = text.find("\"median\"")?;
        let rest = &text[at..];
        let at = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
        rest[at..].split([',', '}']).next()?.trim().parse().ok()
    };
    match (
        median("bare"),
        median("noop_layer"),
        median("layered"),
        median("wrapped"),
    ) {
        (Some(bare), Some(noop), Some(layered), Some(wrapped)) => println!(
            "pass-through: bare {bare:.1} ns, wrapped {wrapped:.1} ns, noop layer {noop:.1} ns, \
             layered {layered:.1} ns; wrapped / bare {:.3}, layered / noop layer {:.3}, \
             layered / bare {:.3}",
            wrapped / bare,
            layered / noop,
            layered / bare
        ),
        _ => println!("pass-through: no estimates found under {}", dir.display()),
    }
}
