//! Compile-time checks that the layer keeps the bounds axum and hyper need.

use axum::Router;
use tower_upgrade::{ResponseFuture, Upgrade, UpgradeLayer, UpgradedIo};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_clone<T: Clone>() {}

#[test]
fn layer_and_service_are_send_sync_clone() {
    assert_send::<UpgradeLayer>();
    assert_sync::<UpgradeLayer>();
    assert_clone::<UpgradeLayer>();
    assert_send::<Upgrade<axum::routing::Route>>();
    assert_sync::<Upgrade<axum::routing::Route>>();
    assert_clone::<Upgrade<axum::routing::Route>>();
    assert_send::<
        ResponseFuture<
            axum::routing::future::RouteFuture<std::convert::Infallible>,
            axum::body::Body,
        >,
    >();
    assert_send::<UpgradedIo>();
}

#[test]
fn layer_fits_a_router() {
    let app: Router = Router::new().layer(UpgradeLayer::new());
    let debug = format!("{:?}", UpgradeLayer::new());
    assert!(debug.contains("registry: []"), "{debug}");
    let _ = app;
}
