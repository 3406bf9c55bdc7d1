//! The seams for authentication and authorization: one typed trait per concern, each
//! answering Allow, Deny or Defer, so that backends (password file, ACL file, and later
//! others) plug in without touching the core. A chain of backends asks each in turn; the
//! first Allow or Deny wins, and if all defer the listener's default applies.

use std::fmt;
use std::net::SocketAddr;

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
