//! The integration tests, in one binary: real servers on `127.0.0.1:0`, spoken to over
//! loopback TCP. Each module was a test binary of its own; `support` holds the helpers
//! they share. Modules that need a feature are gated here.

mod support;

mod bounds;
#[cfg(feature = "deflate")]
mod broadcast;
#[cfg(all(feature = "websocket", feature = "h2c"))]
mod chat_app;
#[cfg(all(feature = "websocket", feature = "h2c"))]
mod chat_redis;
#[cfg(feature = "deflate")]
mod deflate;
#[cfg(all(feature = "websocket", feature = "h2c"))]
mod echo_app;
#[cfg(all(feature = "websocket", feature = "h2c", feature = "axum"))]
mod exhaustion;
#[cfg(all(feature = "h2c", feature = "axum"))]
mod h2c;
mod hostile;
#[cfg(all(feature = "websocket", feature = "h2c"))]
mod hostile_protocols;
mod lifecycle;
#[cfg(all(feature = "websocket", feature = "h2c"))]
mod nginx;
#[cfg(feature = "websocket")]
mod sink;
mod stacking;
#[cfg(all(feature = "websocket", feature = "h2c", feature = "axum"))]
mod tower_stack;
mod upgrade;
#[cfg(feature = "websocket")]
mod websocket;
#[cfg(feature = "websocket")]
mod websocket_lifecycle;
