//! Helpers of the authentication and authorization tests: temporary password and ACL
//! files, a server with them on one listener, CONNECT packets with credentials.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use midge_auth::password::{HashParams, PasswordFile};
use midge_codec::{Connect, ProtocolVersion};
use midge_server::{ListenerConfig, ServerConfig};

use crate::common::{config, connect_packet, mstr, unique_id, TestServer};

/// Writes `text` to a new file `name` in a fresh temporary directory.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_id("midge-auth"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// A password file with `users` (name, password), hashed by midge with parameters cheap
/// enough for tests (argon2id plus SCRAM-SHA-256/512 credentials).
pub fn password_text(users: &[(&str, &str)]) -> String {
    let mut f = PasswordFile::new().with_params(HashParams {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        scram_iterations: 64,
    });
    for (user, pass) in users {
        f.set(user, pass.as_bytes()).expect("hash");
    }
    f.to_text()
}

/// alice/wonderland.
pub fn password_file() -> PathBuf {
    temp_file("passwd", &password_text(&[("alice", "wonderland")]))
}

/// A server whose one TCP listener uses these files; failed logins are answered after
/// `delay`.
pub async fn server_with_delay(
    password: Option<PathBuf>,
    acl: Option<PathBuf>,
    anonymous: bool,
    delay: Duration,
) -> TestServer {
    let mut listener = ListenerConfig::tcp("127.0.0.1:0".parse().expect("addr"));
    listener.password_file = password;
    listener.acl_file = acl;
    listener.allow_anonymous = anonymous;
    let mut config = ServerConfig {
        listeners: vec![listener],
        ..config()
    };
    config.auth.failed_login_delay = delay;
    let server = midge_server::Server::bind(config)
        .await
        .expect("bind")
        .start();
    TestServer {
        addr: server.local_addrs[0],
        server,
    }
}

/// As `server_with_delay`, with a short delay that keeps the tests quick.
pub async fn server_with(
    password: Option<PathBuf>,
    acl: Option<PathBuf>,
    anonymous: bool,
) -> TestServer {
    server_with_delay(password, acl, anonymous, Duration::from_millis(20)).await
}

/// CONNECT with these credentials.
pub fn login(
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    pass: Option<&[u8]>,
) -> Connect {
    let mut c = connect_packet(version, id);
    c.username = user.map(mstr);
    c.password = pass.map(bytes::Bytes::copy_from_slice);
    c
}
