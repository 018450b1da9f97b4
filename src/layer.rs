//! [`UpgradeLayer`]: configuration and the [`Layer`] impl.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::config::Config;
use crate::error::{ConfigError, UpgradeError};
use crate::handler::ProtocolHandler;
use crate::registry::Registry;
use crate::service::Upgrade;
use crate::tracker::Tracker;

/// Layer that switches protocols on HTTP/1.1 upgrade requests, with the handlers of a
/// [`Registry`].
///
/// See the [crate docs](crate) for an example and for where to put it among other layers.
#[derive(Clone, Default)]
#[must_use]
pub struct UpgradeLayer {
    config: Arc<Config>,
}

impl UpgradeLayer {
    /// A layer with no protocols: every request passes through.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer that uses `registry`, which may be shared with other layers.
    pub fn with_registry(registry: Registry) -> Self {
        Self {
            config: Arc::new(Config {
                registry,
                ..Config::default()
            }),
        }
    }

    /// Registers a protocol handler.
    ///
    /// # Errors
    ///
    /// See [`Registry::protocol`].
    pub fn protocol<H: ProtocolHandler>(mut self, handler: H) -> Result<Self, ConfigError> {
        let config = Arc::make_mut(&mut self.config);
        config.reset();
        config.registry = std::mem::take(&mut config.registry).protocol(handler)?;
        Ok(self)
    }

    /// Answers every request that does not switch protocols with
    /// `426 Upgrade Required`, listing the registered protocols in `Upgrade`
    /// (RFC 9110 §15.5.22). The inner service is then never called.
    ///
    /// Use it on a route that only exists as an upgrade endpoint. By default requests that
    /// do not upgrade go on to the inner service.
    pub fn require_upgrade(mut self) -> Self {
        Arc::make_mut(&mut self.config).require_upgrade = true;
        self
    }

    /// Selects the first registered protocol that the client offered, rather than the
    /// first protocol in the client's order that is registered (the default).
    ///
    /// RFC 9110 §7.8 lets a server "ignore the order of preference indicated by the client";
    /// either way, a protocol the client did not offer is never chosen.
    pub fn prefer_server_order(mut self) -> Self {
        Arc::make_mut(&mut self.config).server_order = true;
        self
    }

    /// Calls `f` for every failure after the `101`: the connection could not be taken over,
    /// or the handler returned an error or panicked.
    ///
    /// Failures are logged with `tracing` whether or not a callback is set.
    pub fn on_failed_upgrade<F>(mut self, f: F) -> Self
    where
        F: Fn(&UpgradeError) + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.config).on_failed = Some(Arc::new(f));
        self
    }

    /// The registry this layer uses.
    pub fn registry(&self) -> &Registry {
        &self.config.registry
    }

    /// The [`Tracker`] of this layer's upgraded connections: counts, limits, graceful
    /// shutdown. Clones share it.
    pub fn tracker(&self) -> &Tracker {
        &self.config.tracker
    }

    /// Uses `tracker`, which may be shared with other layers, so that their counts, limits
    /// and shutdown are one.
    ///
    /// By default each layer made with [`new`](UpgradeLayer::new) or
    /// [`with_registry`](UpgradeLayer::with_registry) has a tracker of its own.
    pub fn with_tracker(mut self, tracker: Tracker) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.tracker = tracker;
        config.reset();
        self
    }

    /// Ends an upgraded connection that has had no read or write progress for `timeout`:
    /// the handler's next read or write fails with [`std::io::ErrorKind::TimedOut`].
    ///
    /// The default is no idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.config).idle_timeout = Some(timeout);
        self
    }
}

impl<S> Layer<S> for UpgradeLayer {
    type Service = Upgrade<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Upgrade::from_config(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for UpgradeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}
