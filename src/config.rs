//! What an [`UpgradeLayer`](crate::UpgradeLayer) and its services share.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::UpgradeError;
use crate::registry::Registry;
use crate::tracker::{ProtocolState, Tracker};

/// Callback for failures after the `101`.
pub(crate) type OnFailed = Arc<dyn Fn(&UpgradeError) + Send + Sync>;

/// What the layer and its services share.
#[derive(Clone, Default)]
pub(crate) struct Config {
    pub(crate) registry: Registry,
    pub(crate) require_upgrade: bool,
    pub(crate) server_order: bool,
    pub(crate) on_failed: Option<OnFailed>,
    pub(crate) tracker: Tracker,
    pub(crate) idle_timeout: Option<Duration>,
    /// The tracker's state of each registered protocol, by registry index: found once,
    /// rather than with a lock and a scan per upgrade. Emptied whenever the registry or the
    /// tracker changes (see [`Config::reset`]).
    pub(crate) protocols: OnceLock<Box<[Arc<ProtocolState>]>>,
}

impl Config {
    /// The tracker's state of registry entry `index`.
    #[inline]
    pub(crate) fn protocol(&self, index: usize) -> &Arc<ProtocolState> {
        &self.protocols.get_or_init(|| {
            self.registry
                .tokens()
                .map(|token| self.tracker.protocol(token))
                .collect()
        })[index]
    }

    /// Forgets what was derived from the registry and the tracker, after either changed.
    pub(crate) fn reset(&mut self) {
        self.protocols = OnceLock::new();
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeLayer")
            .field("registry", &self.registry)
            .field("require_upgrade", &self.require_upgrade)
            .field("server_order", &self.server_order)
            .field("on_failed_upgrade", &self.on_failed.is_some())
            .field("tracker", &self.tracker)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}
