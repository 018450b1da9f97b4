//! A one-shot broadcast signal: graceful shutdown and the abort at the drain deadline.
//!
//! Every upgraded connection watches two of them, and its task polls the watch once per
//! wake-up, so the check must cost next to nothing: it is one atomic load. A watch takes
//! the lock only when it registers a new waker, which for a connection task is once in its
//! life. (tokio-util's `CancellationToken` locks on every `is_cancelled` and allocates a
//! tree node and a boxed future per watcher, about 1 500 instructions per connection.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Fires once; wakes every watcher registered at that moment.
#[derive(Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The registered wakers. A slot stays reserved for its watch until the watch is dropped.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Signal {
    /// Fires the signal (once; later calls do nothing) and wakes every watcher.
    pub(crate) fn fire(&self) {
        // Set before taking the lock: a watcher that registers after this section sees
        // the flag under the lock, one that registered before is woken here.
        if self.fired.swap(true, Ordering::AcqRel) {
            return;
        }
        let wakers: Vec<Waker> = self
            .lock()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Watches a [`Signal`] from one task.
pub(crate) struct Watch {
    signal: Arc<Signal>,
    /// Our slot in the signal's waiters, once registered.
    slot: Option<usize>,
    /// The waker registered last, to skip the lock when the task polls again.
    waker: Option<Waker>,
}

impl Watch {
    pub(crate) fn new(signal: Arc<Signal>) -> Self {
        Self {
            signal,
            slot: None,
            waker: None,
        }
    }

    /// Ready once the signal has fired; otherwise the task is woken when it fires.
    #[inline]
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_fired() {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        self.register(cx)
    }

    /// Registers the task's waker: once per task, not per poll.
    #[cold]
    fn register(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut waiters = self.signal.lock();
        if self.signal.is_fired() {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        match self.slot {
            Some(slot) => waiters.slots[slot] = Some(waker.clone()),
            None => {
                let slot = match waiters.free.pop() {
                    Some(slot) => {
                        waiters.slots[slot] = Some(waker.clone());
                        slot
                    }
                    None => {
                        waiters.slots.push(Some(waker.clone()));
                        waiters.slots.len() - 1
                    }
                };
                self.slot = Some(slot);
            }
        }
        drop(waiters);
        self.waker = Some(waker);
        Poll::Pending
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut waiters = self.signal.lock();
            waiters.slots[slot] = None;
            waiters.free.push(slot);
            // After a spike of connections, give the slots back once none is in use.
            if waiters.free.len() == waiters.slots.len() && waiters.slots.capacity() > KEEP_SLOTS {
                *waiters = Waiters::default();
            }
        }
    }
}

/// Slots kept allocated when none is in use: enough for a steady trickle of connections
/// without an allocation each.
const KEEP_SLOTS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_every_watcher_once_and_slots_are_reused() {
        let signal = Arc::new(Signal::default());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let mut watch = Watch::new(Arc::clone(&signal));
            tasks.push(tokio::spawn(async move {
                poll_fn(|cx| watch.poll_fired(cx)).await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(tasks.iter().all(|t| !t.is_finished()));
        assert_eq!(signal.lock().slots.len(), 50);
        signal.fire();
        signal.fire();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("woken")
                .expect("no panic");
        }
        // Every watch was dropped and gave its slot back.
        let waiters = signal.lock();
        assert!(waiters.slots.iter().all(Option::is_none));
        assert_eq!(waiters.free.len(), 50);
    }

    #[tokio::test]
    async fn the_slots_of_a_spike_are_freed_once_none_is_in_use() {
        let signal = Arc::new(Signal::default());
        let mut watches: Vec<Watch> = (0..3000).map(|_| Watch::new(Arc::clone(&signal))).collect();
        poll_fn(|cx| {
            for watch in &mut watches {
                assert!(watch.poll_fired(cx).is_pending());
            }
            Poll::Ready(())
        })
        .await;
        assert_eq!(signal.lock().slots.len(), 3000);
        let last = watches.pop().expect("3000 watches");
        drop(watches);
        assert_eq!(signal.lock().slots.len(), 3000, "one slot still in use");
        drop(last);
        let waiters = signal.lock();
        assert_eq!(waiters.slots.capacity(), 0, "all given back");
        assert_eq!(waiters.free.capacity(), 0);
    }

    #[tokio::test]
    async fn a_watch_made_after_firing_is_ready_at_once() {
        let signal = Arc::new(Signal::default());
        signal.fire();
        let mut watch = Watch::new(Arc::clone(&signal));
        poll_fn(|cx| watch.poll_fired(cx)).await;
        assert!(watch.slot.is_none(), "no registration needed");
    }

    #[tokio::test]
    async fn dropped_watches_free_their_slot_for_the_next() {
        let signal = Arc::new(Signal::default());
        for _ in 0..10 {
            let mut watch = Watch::new(Arc::clone(&signal));
            let polled = poll_fn(|cx| Poll::Ready(watch.poll_fired(cx))).await;
            assert!(polled.is_pending());
        }
        assert_eq!(signal.lock().slots.len(), 1, "one slot, reused");
    }

    #[tokio::test]
    async fn a_new_waker_replaces_the_old_one() {
        let signal = Arc::new(Signal::default());
        let mut watch = Watch::new(Arc::clone(&signal));
        let first = poll_fn(|cx| Poll::Ready(watch.poll_fired(cx))).await;
        assert!(first.is_pending());
        // Moved to another task: the registration follows it.
        let task = tokio::spawn(async move { poll_fn(|cx| watch.poll_fired(cx)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(signal.lock().slots.len(), 1);
        signal.fire();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the second task was woken")
            .expect("no panic");
    }
}
