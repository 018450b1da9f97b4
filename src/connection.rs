//! The task that runs one upgraded connection.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;

use crate::error::{UpgradeError, UpgradeErrorKind};
use crate::handler::UpgradeRequest;
use crate::io::UpgradedIo;
use crate::layer::Config;
use crate::registry::Serve;

/// Spawns the connection task: wait for hyper to hand over the connection (after the `101`
/// has been written), then run the handler. Failures are reported, never propagated.
pub(crate) fn spawn(config: Arc<Config>, on_upgrade: OnUpgrade, serve: Serve, req: UpgradeRequest) {
    tokio::spawn(run(config, on_upgrade, serve, req));
}

async fn run(config: Arc<Config>, on_upgrade: OnUpgrade, serve: Serve, req: UpgradeRequest) {
    let protocol = req.protocol.clone();
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            if e.is_user() {
                // hyper's "upgrade expected but low level API in use".
                tracing::error!(
                    %protocol,
                    error = %e,
                    "the 101 was sent but hyper could not hand over the connection: serve it \
                     with `.with_upgrades()` (hyper) or `serve_connection_with_upgrades` \
                     (hyper-util)"
                );
            } else {
                // Usually the client went away before the switch.
                tracing::debug!(%protocol, error = %e, "connection closed before the switch");
            }
            report(
                &config,
                &UpgradeError::new(UpgradeErrorKind::Upgrade, protocol.as_str(), Some(e.into())),
            );
            return;
        }
    };
    let io = UpgradedIo::new(upgraded);
    match (CatchUnwind {
        future: serve(io, req),
    })
    .await
    {
        Ok(Ok(())) => tracing::trace!(%protocol, "upgraded connection finished"),
        Ok(Err(e)) => {
            tracing::warn!(%protocol, error = %e, "upgraded connection failed");
            report(
                &config,
                &UpgradeError::new(UpgradeErrorKind::Handler, protocol.as_str(), Some(e)),
            );
        }
        Err(panic) => {
            let message = panic_message(&*panic);
            tracing::error!(%protocol, panic = %message, "protocol handler panicked");
            report(
                &config,
                &UpgradeError::new(
                    UpgradeErrorKind::Panic,
                    protocol.as_str(),
                    Some(message.into()),
                ),
            );
        }
    }
}

fn report(config: &Config, error: &UpgradeError) {
    if let Some(on_failed) = &config.on_failed {
        // A panicking callback must not take the task's accounting with it.
        if catch_unwind(AssertUnwindSafe(|| on_failed(error))).is_err() {
            tracing::error!("on_failed_upgrade callback panicked");
        }
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
