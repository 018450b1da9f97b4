//! The registry of protocol handlers and the selection of a protocol for a request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Version, request};

use crate::error::{BoxError, ConfigError};
use crate::handler::{Decision, ProtocolHandler, UpgradeRequest};
use crate::headers::{List, ListError, connection_upgrades, parse_protocol};
use crate::io::UpgradedIo;
use crate::token::UpgradeToken;

/// The future of one upgraded connection: boxed once per upgrade, never per request.
pub(crate) type ServeFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// An accepted upgrade until the switch: the handler with its state, and then the request.
/// One box per upgrade, made when the handler accepts and freed at the switch, so that
/// none of it stays in the connection's long-lived task.
pub(crate) trait Pending: Send {
    /// Gives it the request, before the `101` is sent.
    fn set_request(&mut self, req: UpgradeRequest);

    /// Starts the handler on the switched connection.
    fn serve(self: Box<Self>, io: UpgradedIo) -> ServeFuture;
}

/// The `serve` step with its state bound in, type-erased; see [`Pending`].
pub(crate) type Serve = Box<dyn Pending>;

/// A handler with its state type erased, so that handlers of different types share a list.
pub(crate) trait ErasedHandler: Send + Sync {
    fn supports_http2(&self) -> bool;
    fn needs_service(&self) -> bool;
    fn accept(&self, req: &request::Parts) -> Decision<Serve>;
}

struct Erased<H>(Arc<H>);

impl<H: ProtocolHandler> ErasedHandler for Erased<H> {
    fn supports_http2(&self) -> bool {
        self.0.supports_http2()
    }

    fn needs_service(&self) -> bool {
        self.0.needs_service()
    }

    fn accept(&self, req: &request::Parts) -> Decision<Serve> {
        self.0.accept(req).map(|state| {
            Box::new(Switching {
                handler: Arc::clone(&self.0),
                state,
                req: None,
            }) as Serve
        })
    }
}

/// [`Pending`] for a handler of type `H`.
struct Switching<H: ProtocolHandler> {
    handler: Arc<H>,
    state: H::State,
    req: Option<UpgradeRequest>,
}

impl<H: ProtocolHandler> Pending for Switching<H> {
    fn set_request(&mut self, req: UpgradeRequest) {
        self.req = Some(req);
    }

    fn serve(self: Box<Self>, io: UpgradedIo) -> ServeFuture {
        let Self {
            handler,
            state,
            req,
        } = *self;
        match req {
            Some(req) => Box::pin(handler.serve(io, req, state)),
            // The layer always sets the request before the switch.
            None => Box::pin(std::future::ready(
                Err("upgrade without its request".into()),
            )),
        }
    }
}

pub(crate) struct Entry {
    pub(crate) token: UpgradeToken,
    pub(crate) handler: Arc<dyn ErasedHandler>,
}

/// The protocols a layer can switch to, each with its [`ProtocolHandler`].
///
/// The order of registration is the server's order of preference: it is the order of the
/// `Upgrade` list in a `426` response, and the order used for selection when the layer
/// [prefers its own order](crate::UpgradeLayer::prefer_server_order).
///
/// A registry is cheap to clone (an [`Arc`] inside), so one registry can serve many routes:
/// see [`UpgradeLayer::with_registry`](crate::UpgradeLayer::with_registry).
///
/// # Example
///
/// ```
/// use tower_upgrade::{Registry, UpgradeRequest, UpgradedIo, handler_fn};
///
/// let registry = Registry::new()
///     .protocol(handler_fn("foo/2", |_io: UpgradedIo, _req: UpgradeRequest| async {}))
///     .unwrap()
///     .protocol(handler_fn("bar", |_io: UpgradedIo, _req: UpgradeRequest| async {}))
///     .unwrap();
/// assert_eq!(registry.tokens().map(|t| t.as_str()).collect::<Vec<_>>(), ["foo/2", "bar"]);
///
/// // The same protocol twice is a configuration error.
/// assert!(registry.protocol(handler_fn("FOO/2", |_io: UpgradedIo, _req: UpgradeRequest| async {})).is_err());
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    /// Every token, comma-separated, for `426` responses.
    upgrade_list: Option<HeaderValue>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a protocol handler.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the handler's token is not a valid `name["/"version]`, or if the
    /// same protocol (name compared case-insensitively, version exactly) is already
    /// registered.
    pub fn protocol<H: ProtocolHandler>(self, handler: H) -> Result<Self, ConfigError> {
        let token = UpgradeToken::new(handler.token())?;
        if self
            .inner
            .entries
            .iter()
            .any(|e| e.token.same_protocol(&token))
        {
            return Err(ConfigError::duplicate(token.as_str()));
        }
        let mut entries: Vec<Entry> = self
            .inner
            .entries
            .iter()
            .map(|e| Entry {
                token: e.token.clone(),
                handler: Arc::clone(&e.handler),
            })
            .collect();
        entries.push(Entry {
            token,
            handler: Arc::new(Erased(Arc::new(handler))),
        });
        let list = entries
            .iter()
            .map(|e| e.token.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let upgrade_list =
            HeaderValue::from_str(&list).map_err(|_| ConfigError::invalid_token(&list))?;
        Ok(Self {
            inner: Arc::new(Inner {
                entries,
                upgrade_list: Some(upgrade_list),
            }),
        })
    }

    /// The registered tokens, in the server's order of preference.
    pub fn tokens(&self) -> impl Iterator<Item = &UpgradeToken> {
        self.inner.entries.iter().map(|e| &e.token)
    }

    /// Whether no protocol is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    pub(crate) fn entry(&self, index: usize) -> &Entry {
        &self.inner.entries[index]
    }

    /// Every token, comma-separated, in preference order; `None` when empty.
    pub(crate) fn upgrade_list(&self) -> Option<&HeaderValue> {
        self.inner.upgrade_list.as_ref()
    }

    /// Classifies a request and selects a protocol for it.
    ///
    /// This is the pass-through path's only cost: no allocation, and for a request that is
    /// not an upgrade, one header lookup.
    #[inline]
    pub(crate) fn select<B>(&self, req: &Request<B>, server_order: bool) -> Selection {
        match req.version() {
            Version::HTTP_11 => self.select_http11(req, server_order),
            // RFC 8441: an extended CONNECT names its protocol in `:protocol`.
            Version::HTTP_2 if req.method() == Method::CONNECT => {
                let Some(protocol) = req.extensions().get::<hyper::ext::Protocol>() else {
                    return Selection::None;
                };
                self.inner
                    .entries
                    .iter()
                    .position(|e| {
                        e.handler.supports_http2() && e.token.matches_str(protocol.as_str())
                    })
                    .map_or(Selection::None, |i| Selection::Selected {
                        index: i,
                        http2: true,
                    })
            }
            // RFC 9110 §7.8: a server MUST ignore `Upgrade` in an HTTP/1.0 request. HTTP/2
            // and later have no `Upgrade` (RFC 9113 §8.2.2).
            _ => Selection::None,
        }
    }

    #[inline]
    fn select_http11<B>(&self, req: &Request<B>, server_order: bool) -> Selection {
        let headers = req.headers();
        // The pass-through path: one lookup, no list to read. The lookup's result is the
        // list read below.
        let upgrade = headers.get_all(header::UPGRADE);
        if upgrade.iter().next().is_none() {
            return Selection::None;
        }
        // RFC 9110 §7.6.1: `Upgrade` without the `upgrade` connection option was forwarded by
        // mistake and is ignored; with `close` it cannot be honoured.
        if !connection_upgrades(headers) {
            return Selection::None;
        }
        let mut best: Option<usize> = None;
        let mut offered = false;
        for elem in List::of(upgrade) {
            let (name, version) = match elem.and_then(parse_protocol) {
                Ok(p) => p,
                Err(e) => return Selection::Invalid(e),
            };
            offered = true;
            // Keep reading after a match: an invalid element anywhere is a bad request.
            if best.is_some() && !server_order {
                continue;
            }
            let found = self
                .inner
                .entries
                .iter()
                .position(|e| e.token.matches_offer(name, version));
            if let Some(i) = found {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        }
        match best {
            Some(index) => Selection::Selected {
                index,
                http2: false,
            },
            None if offered => Selection::Unmatched,
            None => Selection::None,
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tokens()).finish()
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Not an upgrade request.
    None,
    /// An upgrade request offering only protocols that are not registered.
    Unmatched,
    /// An upgrade request whose `Upgrade` list cannot be read.
    Invalid(ListError),
    /// The registry entry to use; `http2` for an RFC 8441 extended CONNECT.
    Selected { index: usize, http2: bool },
}
