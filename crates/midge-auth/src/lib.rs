//! Authentication and authorization backends for midge, speaking mosquitto's file formats.
//!
//! - [`password`]: the password file (`user:hash` lines). Reads `mosquitto_passwd` hashes
//!   (`$7$` PBKDF2-SHA512 and `$6$` salted SHA-512), writes argon2id plus SCRAM credentials,
//!   and plugs into the broker as a [`PasswordAuthenticator`].
//! - [`acl`]: mosquitto's `acl_file` (`user`, `topic`, `pattern` lines) as an
//!   [`AclAuthorizer`], with mosquitto's order of evaluation and its subscribe semantics.
//! - [`scram`]: MQTT 5 enhanced authentication with `SCRAM-SHA-256` and `SCRAM-SHA-512`
//!   (RFC 5802, RFC 7677), sans-IO, server and client side; [`enhanced`] plugs it into the
//!   broker as a [`ScramAuthenticator`] over the password file's users.
//!
//! Both backends hold their file behind an atomically swapped pointer: `reload` replaces the
//! whole file at once, and a check in progress finishes on the version it started with.
//! No function here panics on file or network input.
//!
//! ```
//! use midge_auth::{AclAuthorizer, AclFile, HashParams, PasswordAuthenticator, PasswordFile};
//! use midge_broker::auth::{Action, AuthRequest, Authenticator, Authorizer, ClientIdentity, Decision};
//!
//! // Production code keeps the default (OWASP) cost; a doc test should not.
//! let cheap = HashParams { argon2_memory_kib: 8, argon2_iterations: 1, argon2_parallelism: 1, scram_iterations: 2 };
//! let mut passwords = PasswordFile::new().with_params(cheap);
//! passwords.set("alice", b"wonderland")?;
//! let authn = PasswordAuthenticator::new(passwords);
//! let req = AuthRequest {
//!     client_id: "phone-1",
//!     username: Some("alice"),
//!     password: Some(b"wonderland"),
//!     peer: None,
//!     cert_identity: None,
//! };
//! assert_eq!(authn.authenticate(&req), Decision::Allow);
//!
//! let authz = AclAuthorizer::new(AclFile::parse("user alice\ntopic read sensors/#\n")?);
//! let who = ClientIdentity { client_id: "phone-1", username: Some("alice") };
//! assert_eq!(authz.authorize(&who, Action::Subscribe, "sensors/+/temp"), Decision::Allow);
//! assert_eq!(authz.authorize(&who, Action::Publish, "sensors/kitchen/temp"), Decision::Deny);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod acl;
pub mod enhanced;
pub mod password;
pub mod scram;
mod util;

pub use acl::{AclAuthorizer, AclError, AclFile, AclWarning};
pub use enhanced::ScramAuthenticator;
pub use password::{
    HashParams, HashScheme, PasswordAuthenticator, PasswordFile, PasswordFileError,
};
pub use scram::{
    ScramClient, ScramClientFinish, ScramCredentials, ScramError, ScramMechanism, ScramServer,
    ScramServerState,
};
