//! A live-connection slot, and why one can be refused.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Tracker;
use super::budget::MessageBudget;
use super::counts::ProtocolState;

/// Why a new upgraded connection is refused before switching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ShuttingDown,
    AtLimit,
}

/// A live-connection slot; dropping it releases the slot, however the connection ended.
pub(crate) struct Slot {
    pub(super) tracker: Tracker,
    pub(super) protocol: Arc<ProtocolState>,
}

impl Slot {
    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub(crate) fn protocol(&self) -> &ProtocolState {
        &self.protocol
    }

    /// The message budget, as this connection's handler sees it.
    pub(crate) fn message_budget(&self) -> MessageBudget {
        MessageBudget::new(self.tracker.clone(), Arc::clone(&self.protocol))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.protocol.counters.live.fetch_sub(1, Ordering::AcqRel);
        self.tracker
            .inner
            .totals
            .live
            .fetch_sub(1, Ordering::AcqRel);
    }
}
