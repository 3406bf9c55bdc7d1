//! Builds each listener's authentication and authorization from its files: the password
//! file (`midge passwd` or `mosquitto_passwd`) and the ACL file (mosquitto's format).

use std::sync::Arc;

use midge_auth::acl::{AclAuthorizer, AclFile};
use midge_auth::password::{PasswordAuthenticator, PasswordFile};
use midge_broker::auth::ListenerAuth;
use tracing::{info, warn};

use crate::config::ListenerConfig;

/// Loads a listener's password and ACL files.
pub fn listener_auth(c: &ListenerConfig) -> Result<ListenerAuth, String> {
    let mut auth = ListenerAuth {
        allow_anonymous: c.allow_anonymous,
        use_identity_as_username: c.tls.as_ref().is_some_and(|t| t.use_identity_as_username),
        ..Default::default()
    };
    if let Some(path) = &c.password_file {
        let file = PasswordFile::load(path).map_err(|e| e.to_string())?;
        info!(file = %path.display(), users = file.len(), "password file loaded");
        auth.authenticators
            .push(Arc::new(PasswordAuthenticator::new(file)));
    }
    if let Some(path) = &c.acl_file {
        let file = AclFile::load(path).map_err(|e| e.to_string())?;
        for w in file.warnings() {
            warn!(file = %path.display(), "{w}");
        }
        info!(file = %path.display(), rules = file.rule_count(), "ACL file loaded");
        auth.authorizers.push(Arc::new(AclAuthorizer::new(file)));
    }
    Ok(auth)
}
