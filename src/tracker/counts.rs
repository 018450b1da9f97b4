//! The counters of a [`Tracker`](super::Tracker): what they count and their snapshots.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::token::UpgradeToken;

/// The state of one protocol: its counters and its limit.
pub(crate) struct ProtocolState {
    pub(super) token: UpgradeToken,
    pub(crate) counters: Counters,
    pub(super) limit: AtomicUsize,
}

impl ProtocolState {
    pub(crate) fn token(&self) -> &UpgradeToken {
        &self.token
    }
}

/// Live counters of one protocol or of all of them.
#[derive(Default)]
pub(crate) struct Counters {
    attempts: AtomicU64,
    accepted: AtomicU64,
    declined: AtomicU64,
    rejected_by_handler: AtomicU64,
    rejected_at_limit: AtomicU64,
    rejected_shutting_down: AtomicU64,
    rejected_body: AtomicU64,
    rejected_cannot_switch: AtomicU64,
    rejected_head: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    over_budget: AtomicU64,
    pub(super) live: AtomicUsize,
}

/// What happened to an upgrade request or an upgraded connection, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Attempt,
    Accepted,
    Declined,
    RejectedByHandler,
    RejectedAtLimit,
    RejectedShuttingDown,
    RejectedBody,
    RejectedCannotSwitch,
    RejectedHead,
    Completed,
    Failed,
    OverBudget,
}

impl Counters {
    pub(super) fn counter(&self, event: Event) -> &AtomicU64 {
        match event {
            Event::Attempt => &self.attempts,
            Event::Accepted => &self.accepted,
            Event::Declined => &self.declined,
            Event::RejectedByHandler => &self.rejected_by_handler,
            Event::RejectedAtLimit => &self.rejected_at_limit,
            Event::RejectedShuttingDown => &self.rejected_shutting_down,
            Event::RejectedBody => &self.rejected_body,
            Event::RejectedCannotSwitch => &self.rejected_cannot_switch,
            Event::RejectedHead => &self.rejected_head,
            Event::Completed => &self.completed,
            Event::Failed => &self.failed,
            Event::OverBudget => &self.over_budget,
        }
    }

    pub(super) fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            attempts: get(&self.attempts),
            accepted: get(&self.accepted),
            declined: get(&self.declined),
            rejected_by_handler: get(&self.rejected_by_handler),
            rejected_at_limit: get(&self.rejected_at_limit),
            rejected_shutting_down: get(&self.rejected_shutting_down),
            rejected_body: get(&self.rejected_body),
            rejected_cannot_switch: get(&self.rejected_cannot_switch),
            rejected_head: get(&self.rejected_head),
            completed: get(&self.completed),
            failed: get(&self.failed),
            over_budget: get(&self.over_budget),
            live: self.live.load(Ordering::Relaxed) as u64,
        }
    }
}

/// A snapshot of the counters of one protocol, or of all of them.
///
/// `attempts` counts upgrade requests that selected a registered protocol. Each ends as
/// `accepted` (a `101` went out), `declined` (passed to the inner service) or one of the
/// `rejected_*`. Each accepted connection is `live` until it ends as `completed` or
/// `failed` (hyper could not hand it over, the handler failed, panicked or was aborted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Upgrade requests that selected a registered protocol.
    pub attempts: u64,
    /// `101` (or, over HTTP/2, `200`) responses sent.
    pub accepted: u64,
    /// Requests the handler declined, or whose body it did not accept.
    pub declined: u64,
    /// Requests the handler rejected (its own `4xx`).
    pub rejected_by_handler: u64,
    /// Requests refused with `503` at a connection limit.
    pub rejected_at_limit: u64,
    /// Requests refused with `503` during graceful shutdown.
    pub rejected_shutting_down: u64,
    /// Requests whose body could not be read or was too long (`400`, `413`).
    pub rejected_body: u64,
    /// Requests that could not switch (no hyper `OnUpgrade`, `500`).
    pub rejected_cannot_switch: u64,
    /// Requests whose head was too large (`431`) or had no valid `Host` (`400`).
    pub rejected_head: u64,
    /// Upgraded connections whose handler returned `Ok`.
    pub completed: u64,
    /// Upgraded connections that ended in an [`UpgradeError`](crate::UpgradeError).
    pub failed: u64,
    /// Messages refused because buffering them would have passed the
    /// [message budget](crate::Tracker::set_message_budget); the WebSocket handler closes
    /// their connection with `1013 Try Again Later`.
    pub over_budget: u64,
    /// Upgraded connections running now.
    pub live: u64,
}

/// A snapshot of a [`Tracker`](super::Tracker)'s counters: all protocols together, and each protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// All protocols together.
    pub totals: Counts,
    /// Each protocol that has been seen, in the order first seen.
    pub protocols: Vec<(String, Counts)>,
}

impl Stats {
    /// The counts of one protocol (the name compared case-insensitively).
    #[must_use]
    pub fn protocol(&self, token: &str) -> Option<&Counts> {
        self.protocols
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(token))
            .map(|(_, c)| c)
    }
}
