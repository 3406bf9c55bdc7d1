//! midge-auth against files on disk: hashes written by mosquitto_passwd, ACL files, and the
//! password file's save/load cycle.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use midge_auth::{
    AclAuthorizer, AclError, AclFile, HashParams, PasswordAuthenticator, PasswordFile,
    PasswordFileError, ScramClient, ScramMechanism, ScramServer,
};
use midge_broker::auth::{
    Action, AuthRequest, Authenticator, Authorizer, ClientIdentity, Decision,
};

/// Cheap hashing: tests must not spend seconds in argon2.
const FAST: HashParams = HashParams {
    argon2_memory_kib: 8,
    argon2_iterations: 1,
    argon2_parallelism: 1,
    scram_iterations: 2,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("midge-auth-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn verifies_every_mosquitto_passwd_hash() {
    let file = PasswordFile::load(fixture("mosquitto_passwd.txt")).unwrap();
    let users: &[(&str, &str)] = &[
        ("alice", "wonderland"),
        ("bob", "p@ss:word with spaces"),
        ("carol", "secret6"),
        ("dave", "pässwörd €"),
        ("erin smith", "x"),
        ("frank", "thousand"),
    ];
    assert_eq!(
        file.users().collect::<Vec<_>>(),
        users.iter().map(|(u, _)| *u).collect::<Vec<_>>()
    );
    for (user, password) in users {
        assert!(file.verify(user, password.as_bytes()), "{user}");
        assert!(!file.verify(user, b"wrong"), "{user}");
        // One changed byte is enough to fail.
        let mut altered = password.as_bytes().to_vec();
        altered[0] ^= 0x20;
        assert!(!file.verify(user, &altered), "{user}");
    }
    // Passwords of other users do not cross over; unknown users fail.
    assert!(!file.verify("alice", b"secret6"));
    assert!(!file.verify("zoe", b"wonderland"));
    // mosquitto files carry no SCRAM credentials.
    assert!(file
        .scram_credentials("alice", ScramMechanism::Sha256)
        .is_none());
}

#[test]
fn reads_the_output_of_mosquitto_passwd_dash_u() {
    let file = PasswordFile::load(fixture("mosquitto_passwd_U.txt")).unwrap();
    assert!(file.verify("gina", b"plainpass"));
    assert!(file.verify("hank", b"another one"));
    assert!(!file.verify("hank", b"another"));
}

#[test]
fn plain_text_is_refused_by_load_and_hashed_by_load_hashing_plain() {
    let path = fixture("plain.txt");
    let err = PasswordFile::load(&path).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:1: ", path.display())),
        "{shown}"
    );
    assert!(shown.contains("midge passwd -U"), "{shown}");
    assert!(!shown.contains("plainpass"), "password leaked: {shown}");

    let (file, hashed) = PasswordFile::load_hashing_plain(&path, FAST).unwrap();
    assert_eq!(hashed, 2);
    assert!(file.verify("gina", b"plainpass"));
    assert!(file.verify("hank", b"another one"));
}

#[test]
fn save_is_atomic_private_and_round_trips() {
    let dir = TempDir::new("save");
    let path = dir.0.join("passwd");
    let mut file = PasswordFile::load(fixture("mosquitto_passwd.txt"))
        .unwrap()
        .with_params(FAST);
    file.set("new user", b"fresh").unwrap();
    assert!(file.remove("bob"));
    file.save(&path).unwrap();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["passwd"], "temporary file left behind");

    let reread = PasswordFile::load(&path).unwrap();
    assert!(reread.verify("alice", b"wonderland"));
    assert!(reread.verify("new user", b"fresh"));
    assert!(!reread.contains("bob"));
    assert_eq!(reread.to_text(), file.to_text());
    // The mosquitto lines are written back byte for byte.
    let original = std::fs::read_to_string(fixture("mosquitto_passwd.txt")).unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    for line in original.lines().filter(|l| !l.starts_with("bob:")) {
        assert!(written.contains(line), "{line}");
    }
}

#[test]
fn load_errors_name_the_file() {
    let missing = fixture("does-not-exist");
    match PasswordFile::load(&missing) {
        Err(e @ PasswordFileError::Read { .. }) => {
            assert!(e.to_string().contains("does-not-exist"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    match AclFile::load(&missing) {
        Err(e @ AclError::Read { .. }) => assert!(e.to_string().contains("does-not-exist")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn password_authenticator_with_mosquitto_file_and_reload_from_disk() {
    let auth =
        PasswordAuthenticator::new(PasswordFile::load(fixture("mosquitto_passwd.txt")).unwrap());
    let req = |user: Option<&'static str>, password: Option<&'static [u8]>| AuthRequest {
        client_id: "c",
        username: user,
        password,
        peer: None,
        cert_identity: None,
    };
    assert_eq!(
        auth.authenticate(&req(Some("carol"), Some(b"secret6"))),
        Decision::Allow
    );
    assert_eq!(
        auth.authenticate(&req(Some("carol"), Some(b"secret"))),
        Decision::Deny
    );
    assert_eq!(auth.authenticate(&req(None, None)), Decision::Defer);

    auth.reload(PasswordFile::load(fixture("mosquitto_passwd_U.txt")).unwrap());
    assert_eq!(
        auth.authenticate(&req(Some("carol"), Some(b"secret6"))),
        Decision::Deny
    );
    assert_eq!(
        auth.authenticate(&req(Some("gina"), Some(b"plainpass"))),
        Decision::Allow
    );
}

#[test]
fn scram_login_with_credentials_from_a_saved_file() {
    let dir = TempDir::new("scram");
    let path = dir.0.join("passwd");
    let mut file = PasswordFile::new().with_params(FAST);
    file.set("sam", b"scram me").unwrap();
    file.save(&path).unwrap();
    let auth = PasswordAuthenticator::new(PasswordFile::load(&path).unwrap());

    for mechanism in ScramMechanism::ALL {
        let login = |password: &[u8]| {
            let client = ScramClient::new(mechanism, "sam", password).unwrap();
            let (server_first, state) = ScramServer::default()
                .start(mechanism, &client.client_first(), |user| {
                    auth.scram_credentials(user, mechanism)
                })
                .unwrap();
            let (client_final, finish) = client.handle_server_first(&server_first).unwrap();
            let (server_final, user) = state.finish(&client_final)?;
            finish.verify_server_final(&server_final).unwrap();
            Ok::<_, midge_auth::ScramError>(user)
        };
        assert_eq!(login(b"scram me").unwrap(), "sam");
        assert!(login(b"scram you").is_err());
    }
    // The same user can also log in with a plain password.
    assert!(auth.file().verify("sam", b"scram me"));
}

#[test]
fn acl_file_from_disk() {
    let authz = AclAuthorizer::new(AclFile::load(fixture("acl.conf")).unwrap());
    assert!(authz.file().warnings().is_empty());
    let who = |client_id, username| ClientIdentity {
        client_id,
        username,
    };
    let gateway = who("gw-1", Some("sensor-gateway"));
    let dash = who("dash-7", Some("dashboard"));
    let anon = who("anon", None);
    let cases: &[(&ClientIdentity<'_>, Action, &str, Decision)] = &[
        (
            &gateway,
            Action::Publish,
            "sensors/kitchen/t",
            Decision::Allow,
        ),
        (
            &gateway,
            Action::Publish,
            "sensors/admin/reset",
            Decision::Deny,
        ),
        (
            &gateway,
            Action::Receive,
            "sensors/kitchen/t",
            Decision::Deny,
        ),
        (
            &gateway,
            Action::Publish,
            "clients/gw-1/status",
            Decision::Allow,
        ),
        (
            &gateway,
            Action::Subscribe,
            "clients/gw-1/#",
            Decision::Allow,
        ),
        (
            &gateway,
            Action::Subscribe,
            "clients/+/status",
            Decision::Deny,
        ),
        (&dash, Action::Subscribe, "sensors/#", Decision::Allow),
        (&dash, Action::Subscribe, "#", Decision::Deny),
        (
            &dash,
            Action::Receive,
            "$SYS/broker/clients/connected",
            Decision::Allow,
        ),
        (&dash, Action::Subscribe, "$SYS/#", Decision::Deny),
        (
            &dash,
            Action::Receive,
            "users/dashboard/inbox",
            Decision::Allow,
        ),
        (&anon, Action::Receive, "public/x", Decision::Allow),
        (&anon, Action::Receive, "users/anon/inbox", Decision::Deny),
        (&anon, Action::Publish, "public/x", Decision::Deny),
    ];
    for (who, action, topic, expected) in cases {
        assert_eq!(
            authz.authorize(who, *action, topic),
            *expected,
            "{who:?} {action:?} {topic}"
        );
    }
}

#[test]
fn acl_syntax_error_names_file_line_and_fix() {
    let path = fixture("acl_bad.conf");
    let err = AclFile::load(&path).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:3: ", path.display())),
        "{shown}"
    );
    assert!(shown.contains("\"readonly\""), "{shown}");
    assert!(
        shown.contains("expected read, write, readwrite or deny"),
        "{shown}"
    );
}
