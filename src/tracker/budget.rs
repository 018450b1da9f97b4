//! The message budget: a bound on the message bytes buffered by all the connections of a
//! [`Tracker`], and the reservations that count them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Tracker;
use super::counts::{Event, ProtocolState};

/// The budget of buffered message bytes shared by the upgraded connections of a
/// [`Tracker`], as one connection's handler sees it.
///
/// Handed to handlers in [`UpgradeRequest::message_budget`](crate::UpgradeRequest::message_budget).
/// The WebSocket handler uses it by itself; a custom protocol that buffers messages
/// takes a [`BudgetReservation`] and grows it before each buffer grows.
///
/// The limit is set with [`Tracker::set_message_budget`]. Without one, reservations
/// always succeed and count nothing, at the cost of one atomic load.
///
/// # Example
///
/// ```
/// use tower_upgrade::{UpgradeRequest, UpgradedIo, handler_fn};
///
/// let handler = handler_fn("blob", |_io: UpgradedIo, req: UpgradeRequest| async move {
///     let mut reservation = req.message_budget().reservation();
///     let announced = 1 << 20; // say, a length prefix read from the peer
///     if !reservation.try_grow(announced) {
///         return Err("over the message budget: try again later");
///     }
///     let buf = Vec::<u8>::with_capacity(announced);
///     // ... read the message into `buf`, hand it on, then:
///     drop(buf);
///     reservation.release();
///     Ok(())
/// });
/// # let _ = handler;
/// ```
#[derive(Clone)]
pub struct MessageBudget {
    tracker: Tracker,
    protocol: Arc<ProtocolState>,
}

/// Bytes taken from a [`MessageBudget`]; given back by [`release`](Self::release) or when
/// dropped.
///
/// See [`MessageBudget`] for an example.
#[must_use = "a reservation gives its bytes back when dropped"]
pub struct BudgetReservation {
    budget: MessageBudget,
    /// Bytes added to the tracker's count (0 while no budget is set).
    bytes: usize,
    /// A refusal was counted since the last release: count each refused message once.
    refused: bool,
}

/// The shared count: bytes reserved now, and the limit (`usize::MAX` for none).
pub(super) struct Budget {
    pub(super) used: AtomicUsize,
    pub(super) limit: AtomicUsize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(usize::MAX),
        }
    }
}

impl MessageBudget {
    pub(crate) fn new(tracker: Tracker, protocol: Arc<ProtocolState>) -> Self {
        Self { tracker, protocol }
    }

    /// An empty reservation against this budget.
    pub fn reservation(&self) -> BudgetReservation {
        BudgetReservation {
            budget: self.clone(),
            bytes: 0,
            refused: false,
        }
    }

    /// The limit, if one is set.
    #[must_use]
    pub fn limit(&self) -> Option<usize> {
        self.tracker.message_budget()
    }

    /// Bytes reserved now, by all connections together.
    #[must_use]
    pub fn used(&self) -> usize {
        self.tracker.buffered_message_bytes()
    }

    fn shared(&self) -> &Budget {
        &self.tracker.inner.budget
    }
}

impl BudgetReservation {
    /// Reserves `additional` more bytes; `false` if that would pass the limit, and then
    /// nothing is reserved and the refusal is counted in
    /// [`Counts::over_budget`](crate::Counts::over_budget) (once until the next
    /// [`release`](Self::release): one refused message, one count).
    ///
    /// With no budget set it succeeds and counts nothing.
    pub fn try_grow(&mut self, additional: usize) -> bool {
        let budget = self.budget.shared();
        let limit = budget.limit.load(Ordering::Relaxed);
        if limit == usize::MAX || additional == 0 {
            return true;
        }
        let before = budget.used.fetch_add(additional, Ordering::AcqRel);
        if before.saturating_add(additional) <= limit {
            self.bytes += additional;
            return true;
        }
        budget.used.fetch_sub(additional, Ordering::AcqRel);
        if !self.refused {
            self.refused = true;
            let budget = &self.budget;
            budget.tracker.record(&budget.protocol, Event::OverBudget);
        }
        false
    }

    /// Gives every reserved byte back (the message was handed on, or dropped).
    pub fn release(&mut self) {
        self.refused = false;
        if self.bytes != 0 {
            self.budget
                .shared()
                .used
                .fetch_sub(std::mem::take(&mut self.bytes), Ordering::AcqRel);
        }
    }

    /// Bytes this reservation holds against the budget.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BudgetReservation {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for MessageBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBudget")
            .field("limit", &self.limit())
            .field("used", &self.used())
            .finish()
    }
}

impl fmt::Debug for BudgetReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetReservation")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::UpgradeToken;

    fn budget(tracker: &Tracker) -> MessageBudget {
        tracker.budget_for(&UpgradeToken::new("websocket").unwrap())
    }

    #[test]
    fn reservations_share_the_limit_and_count_each_refused_message_once() {
        let tracker = Tracker::new();
        tracker.set_message_budget(Some(100));
        let budget = budget(&tracker);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.try_grow(60));
        assert!(!b.try_grow(41));
        assert!(!b.try_grow(41));
        assert_eq!(tracker.stats().totals.over_budget, 1);
        assert_eq!(
            tracker.stats().protocol("websocket").unwrap().over_budget,
            1
        );
        assert!(b.try_grow(40));
        assert_eq!(tracker.buffered_message_bytes(), 100);
        a.release();
        assert_eq!(tracker.buffered_message_bytes(), 40);
        drop(b);
        assert_eq!(tracker.buffered_message_bytes(), 0);
    }

    #[test]
    fn without_a_budget_nothing_is_counted() {
        let tracker = Tracker::new();
        let mut a = budget(&tracker).reservation();
        assert!(a.try_grow(usize::MAX / 2));
        assert_eq!(a.bytes(), 0);
        assert_eq!(tracker.buffered_message_bytes(), 0);
    }
}
