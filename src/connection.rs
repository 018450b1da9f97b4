//! The task that runs one upgraded connection.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;
use tracing::Instrument;

use crate::config::Config;
use crate::error::{UpgradeError, UpgradeErrorKind};
use crate::handler::UpgradeRequest;
use crate::io::UpgradedIo;
use crate::registry::Serve;
use crate::tracker::{Event, Slot};

/// Spawns the connection task: wait for hyper to hand over the connection (after the `101`
/// has been written), then run the handler. Failures are reported, never propagated. The
/// slot is released when the task ends, whatever way.
pub(crate) fn spawn(
    config: Arc<Config>,
    on_upgrade: OnUpgrade,
    serve: Serve,
    req: UpgradeRequest,
    slot: Slot,
) {
    // DEBUG: a subscriber keeps the data of every live span, and an upgraded connection
    // may live for hours; at the default levels, only failures are logged (with their
    // protocol), and a connection costs no span.
    let span = tracing::debug_span!(
        "upgraded",
        protocol = %req.protocol,
        peer = tracing::field::Empty,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    // The request goes into the box that already holds the handler's state.
    let mut pending = serve;
    pending.set_request(req);
    let traced = !span.is_disabled();
    // What the task records into: its span when enabled, else none.
    let record = if traced {
        span.clone()
    } else {
        tracing::Span::none()
    };
    let tasks = slot.tracker().tasks().clone();
    let task = async move {
        // Read the clock only for a span that records the duration.
        let start = traced.then(Instant::now);
        let protocol = slot.protocol().token().as_str();
        let result = {
            // Not `select!` on the signal: the watch is one atomic load per poll, and this
            // task is polled once per message.
            let mut abort = slot.tracker().abort_watch();
            let mut running = std::pin::pin!(run(&config, on_upgrade, pending, protocol, &record));
            std::future::poll_fn(|cx| {
                if abort.poll_fired(cx).is_ready() {
                    return Poll::Ready(Err(UpgradeError::new(
                        UpgradeErrorKind::Aborted,
                        protocol,
                        None,
                    )));
                }
                running.as_mut().poll(cx)
            })
            .await
        };
        let span = record;
        if let Some(start) = start {
            span.record("duration_ms", start.elapsed().as_millis() as u64);
        }
        // Recording into a disabled span looks its field up all the same.
        match result {
            Ok(()) => {
                if traced {
                    span.record("outcome", "completed");
                }
                slot.tracker().record(slot.protocol(), Event::Completed);
                tracing::debug!("upgraded connection ended");
            }
            Err(error) => {
                if traced {
                    span.record("outcome", tracing::field::display(error.kind_str()));
                }
                slot.tracker().record(slot.protocol(), Event::Failed);
                report(&config, &error);
            }
        }
        drop(slot);
    };
    // A disabled span (the default, below DEBUG) is not entered on every poll.
    if traced {
        tasks.spawn(task.instrument(span));
    } else {
        tasks.spawn(task);
    }
}

async fn run(
    config: &Config,
    on_upgrade: OnUpgrade,
    pending: Serve,
    protocol: &str,
    span: &tracing::Span,
) -> Result<(), UpgradeError> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            if e.is_user() {
                // hyper's "upgrade expected but low level API in use".
                tracing::error!(
                    protocol,
                    error = %e,
                    "the 101 was sent but hyper could not hand over the connection: serve it \
                     with `.with_upgrades()` (hyper) or `serve_connection_with_upgrades` \
                     (hyper-util)"
                );
            } else {
                // Usually the client went away before the switch.
                tracing::debug!(error = %e, "connection closed before the switch");
            }
            return Err(UpgradeError::new(
                UpgradeErrorKind::Upgrade,
                protocol,
                Some(e.into()),
            ));
        }
    };
    let io = UpgradedIo::new(upgraded, config.idle_timeout);
    // A system call: only for a span that records it.
    if !span.is_none()
        && let Some(peer) = io.tcp_stream().and_then(|tcp| tcp.peer_addr().ok())
    {
        span.record("peer", tracing::field::display(peer));
    }
    tracing::debug!("upgraded connection started");
    // The request goes into the handler and the box is freed before the long wait.
    let serving = pending.serve(io);
    match (CatchUnwind { future: serving }).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(protocol, error = %ErrorChain(&*e), "upgraded connection failed");
            Err(UpgradeError::new(
                UpgradeErrorKind::Handler,
                protocol,
                Some(e),
            ))
        }
        Err(panic) => {
            let message = panic_message(&*panic);
            tracing::error!(protocol, panic = %message, "protocol handler panicked");
            Err(UpgradeError::new(
                UpgradeErrorKind::Panic,
                protocol,
                Some(message.into()),
            ))
        }
    }
}

fn report(config: &Config, error: &UpgradeError) {
    if error.kind() == UpgradeErrorKind::Aborted {
        tracing::warn!(
            protocol = error.protocol(),
            "upgraded connection aborted at the drain deadline"
        );
    }
    if let Some(on_failed) = &config.on_failed {
        // A panicking callback must not take the task's accounting with it.
        if catch_unwind(AssertUnwindSafe(|| on_failed(error))).is_err() {
            tracing::error!("on_failed_upgrade callback panicked");
        }
    }
}

/// Displays an error with its sources: hyper's errors say little on their own
/// ("connection error") and put the cause in `source()`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

pin_project! {
    /// Catches a panic while polling the inner future.
    struct CatchUnwind<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
