//! MQTT 5 enhanced authentication with SCRAM against the password file: plugs the sans-IO
//! [`ScramServer`] into the broker's [`EnhancedAuthenticator`] seam. The credentials are the
//! password file's `$scram-sha-256$` / `$scram-sha-512$` lines, which `midge passwd` writes
//! next to every argon2id hash, so one user database serves both CONNECT passwords and AUTH.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use midge_broker::auth::{AuthExchange, AuthStep, EnhancedAuthenticator};

use crate::password::PasswordAuthenticator;
use crate::scram::{ScramMechanism, ScramServer, ScramServerState};

/// `SCRAM-SHA-256` and `SCRAM-SHA-512` for the users of a password file.
#[derive(Debug, Clone)]
pub struct ScramAuthenticator {
    passwords: Arc<PasswordAuthenticator>,
    server: ScramServer,
}

impl ScramAuthenticator {
    /// SCRAM for the users of `passwords` (reloading it reloads them too).
    pub fn new(passwords: Arc<PasswordAuthenticator>) -> Self {
        ScramAuthenticator {
            passwords,
            server: ScramServer::default(),
        }
    }
}

impl EnhancedAuthenticator for ScramAuthenticator {
    fn start(&self, method: &str) -> Option<Box<dyn AuthExchange>> {
        let mechanism = ScramMechanism::from_name(method)?;
        Some(Box::new(ScramExchange {
            passwords: self.passwords.clone(),
            server: self.server.clone(),
            mechanism,
            state: None,
            done: false,
        }))
    }
}

/// One SCRAM exchange: client-first, then client-final.
struct ScramExchange {
    passwords: Arc<PasswordAuthenticator>,
    server: ScramServer,
    mechanism: ScramMechanism,
    state: Option<ScramServerState>,
    done: bool,
}

impl fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramExchange")
            .field("mechanism", &self.mechanism)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl AuthExchange for ScramExchange {
    fn step(&mut self, data: &[u8]) -> AuthStep {
        if self.done {
            return AuthStep::Failed;
        }
        match self.state.take() {
            None => {
                let passwords = &self.passwords;
                let mechanism = self.mechanism;
                match self.server.start(mechanism, data, |user| {
                    passwords.scram_credentials(user, mechanism)
                }) {
                    Ok((server_first, state)) => {
                        self.state = Some(state);
                        AuthStep::Continue(Bytes::from(server_first))
                    }
                    Err(_) => {
                        self.done = true;
                        AuthStep::Failed
                    }
                }
            }
            Some(state) => {
                self.done = true;
                match state.finish(data) {
                    Ok((server_final, username)) => AuthStep::Success {
                        data: Some(Bytes::from(server_final)),
                        username: username.into(),
                    },
                    Err(_) => AuthStep::Failed,
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::password::{HashParams, PasswordFile};
    use crate::scram::ScramClient;

    fn authenticator() -> ScramAuthenticator {
        let cheap = HashParams {
            argon2_memory_kib: 8,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            scram_iterations: 2,
        };
        let mut file = PasswordFile::new().with_params(cheap);
        file.set("alice", b"wonderland").unwrap();
        ScramAuthenticator::new(Arc::new(PasswordAuthenticator::new(file)))
    }

    fn run(auth: &ScramAuthenticator, method: &str, user: &str, password: &[u8]) -> AuthStep {
        let mechanism = ScramMechanism::from_name(method).unwrap();
        let client = ScramClient::new(mechanism, user, password).unwrap();
        let mut ex = auth.start(method).unwrap();
        let AuthStep::Continue(server_first) = ex.step(&client.client_first()) else {
            panic!("expected server-first");
        };
        let (client_final, _finish) = client.handle_server_first(&server_first).unwrap();
        ex.step(&client_final)
    }

    #[test]
    fn both_mechanisms_authenticate_the_password_file_users() {
        let auth = authenticator();
        for method in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            match run(&auth, method, "alice", b"wonderland") {
                AuthStep::Success { data, username } => {
                    assert_eq!(&*username, "alice");
                    assert!(data.unwrap().starts_with(b"v="));
                }
                other => panic!("{method}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_password_unknown_user_and_garbage_fail() {
        let auth = authenticator();
        assert_eq!(
            run(&auth, "SCRAM-SHA-256", "alice", b"wrong"),
            AuthStep::Failed
        );
        assert_eq!(
            run(&auth, "SCRAM-SHA-256", "mallory", b"wonderland"),
            AuthStep::Failed
        );
        let mut ex = auth.start("SCRAM-SHA-256").unwrap();
        assert_eq!(ex.step(b"\xff\x00garbage"), AuthStep::Failed);
        assert_eq!(ex.step(b"n,,n=alice,r=abc"), AuthStep::Failed);
        assert!(auth.start("PLAIN").is_none());
    }
}
