//! The seams for authentication and authorization: one typed trait per concern, each
//! answering Allow, Deny or Defer, so that backends (password file, ACL file, and later
//! others) plug in without touching the core. A chain of backends asks each in turn; the
//! first Allow or Deny wins, and if all defer the listener's default applies.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// The answer of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Permitted.
    Allow,
    /// Refused.
    Deny,
    /// No opinion: ask the next backend.
    Defer,
}

/// Who is connecting, as presented in CONNECT and by the transport.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The client identifier (possibly assigned by the broker).
    pub client_id: &'a str,
    /// User Name from CONNECT, or the client certificate's identity when the listener
    /// uses it as the username.
    pub username: Option<&'a str>,
    /// Password from CONNECT. Never logged.
    pub password: Option<&'a [u8]>,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// Identity (CN or SAN) of a verified client certificate, if any.
    pub cert_identity: Option<&'a str>,
}

/// Checks who may connect. Implementations may be slow (password hashing is, by design):
/// the server calls them away from the tasks that move messages.
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// Decides on one connection attempt.
    fn authenticate(&self, req: &AuthRequest<'_>) -> Decision;
}

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Publish to a topic name (also its will).
    Publish,
    /// Subscribe with a topic filter (may contain wildcards; `$share/group/` is removed).
    Subscribe,
    /// Receive a message published on a topic name (deliveries and retained messages).
    Receive,
}

/// An authenticated client, as authorization sees it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIdentity<'a> {
    /// The client identifier.
    pub client_id: &'a str,
    /// The authenticated username, if any.
    pub username: Option<&'a str>,
}

/// Checks what a connected client may do. Called on every PUBLISH and SUBSCRIBE, so it
/// must answer from memory, quickly.
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// Decides on one action on one topic name or filter.
    fn authorize(&self, who: &ClientIdentity<'_>, action: Action, topic: &str) -> Decision;
}

/// MQTT 5 enhanced authentication (the AUTH packet): one backend per family of methods.
pub trait EnhancedAuthenticator: Send + Sync + fmt::Debug {
    /// Begins an exchange for `method` (the Authentication Method of CONNECT or of a
    /// re-authentication), or `None` if this backend does not know the method.
    fn start(&self, method: &str) -> Option<Box<dyn AuthExchange>>;
}

/// One enhanced authentication exchange, fed the client's Authentication Data in turn (that
/// of CONNECT or AUTH 0x19 first, then of each AUTH 0x18).
pub trait AuthExchange: Send + fmt::Debug {
    /// Handles the client's next message.
    fn step(&mut self, data: &[u8]) -> AuthStep;
}

/// Where an enhanced authentication exchange stands after a client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this to the client in AUTH 0x18 and wait for its answer.
    Continue(Bytes),
    /// Authenticated as `username`; `data` goes to the client in CONNACK (or AUTH 0x00).
    Success {
        /// Final data for the client, if the method has any.
        data: Option<Bytes>,
        /// The authenticated user, used for authorization.
        username: Box<str>,
    },
    /// Refused (wrong credentials or a malformed message; deliberately not told apart).
    Failed,
}

/// Runs slow work, password hashing above all, on threads that do not move messages.
pub trait BlockingRunner: Send + Sync + fmt::Debug {
    /// Queues `job`; false (and `job` dropped) if too many jobs are already waiting.
    fn run(&self, job: Box<dyn FnOnce() + Send>) -> bool;
}

/// The authentication and authorization in force on one listener.
#[derive(Debug, Default)]
pub struct ListenerAuth {
    /// Accept clients that every authenticator deferred on (typically: no username).
    pub allow_anonymous: bool,
    /// A verified client certificate's identity becomes the username, and authenticates
    /// the client by itself.
    pub use_identity_as_username: bool,
    /// Asked in order; the first Allow or Deny decides.
    pub authenticators: Vec<Arc<dyn Authenticator>>,
    /// Asked in order; the first Allow or Deny decides; with none, everything is allowed.
    pub authorizers: Vec<Arc<dyn Authorizer>>,
    /// Enhanced authentication methods (MQTT 5 AUTH), asked in order for the method.
    pub enhanced: Vec<Arc<dyn EnhancedAuthenticator>>,
    /// Where password checks run; `None` checks them on the connection's own thread
    /// (embedding and tests).
    pub runner: Option<Arc<dyn BlockingRunner>>,
    /// A refused login is answered only after this long, to slow down password guessing.
    pub failed_login_delay: Duration,
}

impl ListenerAuth {
    /// Anyone may connect and do anything (tests, embedding, loopback defaults).
    pub fn open() -> Self {
        ListenerAuth {
            allow_anonymous: true,
            ..Default::default()
        }
    }

    /// Whether the client may connect. If every authenticator defers, a client is accepted
    /// only where anonymous access is allowed.
    pub fn authenticate(&self, req: &AuthRequest<'_>) -> bool {
        for a in &self.authenticators {
            match a.authenticate(req) {
                Decision::Allow => return true,
                Decision::Deny => return false,
                Decision::Defer => {}
            }
        }
        self.allow_anonymous
    }

    /// Whether checking a client means asking the authenticators (which may be slow),
    /// rather than only the anonymous setting.
    pub fn has_authenticators(&self) -> bool {
        !self.authenticators.is_empty()
    }

    /// Begins an enhanced authentication exchange, or `None` if no backend knows `method`.
    pub fn start_exchange(&self, method: &str) -> Option<Box<dyn AuthExchange>> {
        self.enhanced.iter().find_map(|e| e.start(method))
    }

    /// Whether any authorizer is configured (if not, every check is skipped).
    pub fn has_authorizers(&self) -> bool {
        !self.authorizers.is_empty()
    }

    /// Whether `who` may perform `action` on `topic`.
    pub fn authorize(&self, who: &ClientIdentity<'_>, action: Action, topic: &str) -> bool {
        for a in &self.authorizers {
            match a.authorize(who, action, topic) {
                Decision::Allow => return true,
                Decision::Deny => return false,
                Decision::Defer => {}
            }
        }
        // Authorizers that all defer grant nothing; no authorizer at all grants everything.
        self.authorizers.is_empty()
    }
}
