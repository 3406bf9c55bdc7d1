//! The password file: `user:hash` lines, as `mosquitto_passwd` writes them, plus the hashes
//! midge writes.
//!
//! Formats read (one per line; blank lines and `#` comments are kept as they are):
//!
//! | hash | written by | algorithm |
//! |---|---|---|
//! | `$7$<iterations>$<salt>$<hash>` | `mosquitto_passwd` (2.x default) | PBKDF2-HMAC-SHA512, 64-byte output |
//! | `$6$<salt>$<hash>` | `mosquitto_passwd -H sha512` (1.x default) | SHA-512 of password bytes then salt bytes |
//! | `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>` | `midge passwd` | argon2id (PHC string) |
//! | `$scram-sha-256$<iterations>$<salt>$<stored_key>$<server_key>` | `midge passwd` | SCRAM credentials (also `$scram-sha-512$`) |
//!
//! Salts and hashes are standard base64. A user has at most one password line (`$7$`, `$6$`
//! or argon2) and at most one SCRAM line per mechanism. `verify` uses the password line when
//! there is one, else a SCRAM line; SCRAM exchanges use the SCRAM lines.
//!
//! Invariants: errors name the file and line, never a hash or a password; comparisons of
//! hashes are constant-time; checking an unknown user costs about one hash of the kind the
//! file uses, so response times do not tell which users exist.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use midge_broker::auth::{AuthRequest, Authenticator, Decision};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::scram::{self, ScramCredentials, ScramError, ScramMechanism};
use crate::util::{random_bytes, write_atomic, B64};

/// Iterations `mosquitto_passwd` uses for `$7$` hashes.
pub const MOSQUITTO_PBKDF2_ITERATIONS: u32 = 101;

/// Salt length of `mosquitto_passwd` hashes, in bytes.
const MOSQUITTO_SALT_LEN: usize = 12;

/// Salt length of new argon2id hashes, in bytes.
const ARGON2_SALT_LEN: usize = 16;

/// Length of `$7$` and `$6$` hashes, in bytes (SHA-512 output).
const SHA512_LEN: usize = 64;

/// How expensive new hashes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id passes over memory.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// PBKDF2 iterations of new SCRAM credentials.
    pub scram_iterations: u32,
}

impl HashParams {
    /// OWASP's argon2id recommendation (m = 19456 KiB, t = 2, p = 1) and RFC 7677's 4096
    /// SCRAM iterations: the default.
    pub const OWASP: HashParams = HashParams {
        argon2_memory_kib: 19_456,
        argon2_iterations: 2,
        argon2_parallelism: 1,
        scram_iterations: scram::DEFAULT_ITERATIONS,
    };
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams::OWASP
    }
}

/// Which lines [`PasswordFile::set_with`] writes for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashScheme {
    /// An argon2id line plus `SCRAM-SHA-256` and `SCRAM-SHA-512` lines: the user can log in
    /// with a password or with SCRAM. The default.
    #[default]
    Argon2idWithScram,
    /// A single `$7$` line (PBKDF2-SHA512, 101 iterations) exactly as `mosquitto_passwd`
    /// writes it, for files that mosquitto must read too.
    MosquittoPbkdf2,
}

/// Why a password file could not be read, parsed, changed or written.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("cannot read password file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file could not be written.
    #[error("cannot write password file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A line is not valid. The message never contains the hash.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file name (or `<password file>` for text parsed from memory).
        file: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A user name that cannot be stored in the file.
    #[error("invalid user name {user:?}: {reason}")]
    InvalidUser {
        /// The user name.
        user: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// argon2 refused the parameters.
    #[error("cannot hash the password")]
    Argon2(#[from] argon2::Error),
    /// argon2 could not produce the hash string.
    #[error("cannot hash the password")]
    PasswordHash(#[from] argon2::password_hash::Error),
    /// SCRAM credentials could not be generated.
    #[error("cannot generate SCRAM credentials")]
    Scram(#[from] ScramError),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random(#[source] getrandom::Error),
}

/// A password hash (the one password line of a user).
#[derive(Clone, PartialEq, Eq)]
enum StoredHash {
    /// A PHC string `$argon2id$...` (argon2i and argon2d are read too).
    Argon2(String),
    /// mosquitto `$7$`.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// mosquitto `$6$`.
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

impl StoredHash {
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Argon2(phc) => match PasswordHash::new(phc) {
                // The hash's own parameters are used; the comparison is constant-time.
                Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
                Err(_) => false,
            },
            StoredHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = [0u8; SHA512_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                out.ct_eq(hash.as_slice()).into()
            }
            StoredHash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                digest.finalize().as_slice().ct_eq(hash.as_slice()).into()
            }
        }
    }

    fn render(&self) -> String {
        match self {
            StoredHash::Argon2(phc) => phc.clone(),
            StoredHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => format!("$7${iterations}${}${}", B64.encode(salt), B64.encode(hash)),
            StoredHash::Sha512 { salt, hash } => {
                format!("$6${}${}", B64.encode(salt), B64.encode(hash))
            }
        }
    }
}

/// One line's credential.
enum Credential {
    Password(StoredHash),
    Scram(ScramMechanism, ScramCredentials),
}

/// True if `s` claims to be a hash midge knows (rather than a plain-text password).
fn looks_like_hash(s: &str) -> bool {
    ["$7$", "$6$", "$argon2", "$scram-"]
        .iter()
        .any(|p| s.starts_with(p))
}

fn decode_b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    match B64.decode(s) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(format!("empty {what}")),
        Err(_) => Err(format!("{what} is not valid base64")),
    }
}

fn parse_iterations(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("iteration count must be a whole number of at least 1".to_owned()),
    }
}

/// Parses one hash. The error says what is wrong without repeating the hash.
fn parse_credential(s: &str) -> Result<Credential, String> {
    if let Some(rest) = s.strip_prefix("$7$") {
        let parts: Vec<&str> = rest.split('$').collect();
        let [iterations, salt, hash] = parts[..] else {
            return Err("a $7$ hash has the form $7$<iterations>$<salt>$<hash>".to_owned());
        };
        let iterations = parse_iterations(iterations)?;
        let salt = decode_b64(salt, "salt")?;
        let hash = decode_b64(hash, "hash")?;
        if hash.len() != SHA512_LEN {
            return Err(format!("a $7$ hash must decode to {SHA512_LEN} bytes"));
        }
        return Ok(Credential::Password(StoredHash::Pbkdf2Sha512 {
            iterations,
            salt,
            hash,
        }));
    }
    if let Some(rest) = s.strip_prefix("$6$") {
        let parts: Vec<&str> = rest.split('$').collect();
        let [salt, hash] = parts[..] else {
            return Err("a $6$ hash has the form $6$<salt>$<hash>".to_owned());
        };
        let salt = decode_b64(salt, "salt")?;
        let hash = decode_b64(hash, "hash")?;
        if hash.len() != SHA512_LEN {
            return Err(format!("a $6$ hash must decode to {SHA512_LEN} bytes"));
        }
        return Ok(Credential::Password(StoredHash::Sha512 { salt, hash }));
    }
    if s.starts_with("$argon2") {
        let parsed = PasswordHash::new(s).map_err(|_| "malformed argon2 PHC string".to_owned())?;
        if !matches!(
            parsed.algorithm.as_str(),
            "argon2id" | "argon2i" | "argon2d"
        ) {
            return Err("unknown argon2 variant (expected argon2id)".to_owned());
        }
        if parsed.hash.is_none() || parsed.salt.is_none() {
            return Err("argon2 PHC string without salt or hash".to_owned());
        }
        Params::try_from(&parsed).map_err(|_| "invalid argon2 parameters".to_owned())?;
        return Ok(Credential::Password(StoredHash::Argon2(s.to_owned())));
    }
    for mechanism in ScramMechanism::ALL {
        let prefix = format!("${}$", mechanism.file_tag());
        if let Some(rest) = s.strip_prefix(&prefix) {
            let parts: Vec<&str> = rest.split('$').collect();
            let [iterations, salt, stored_key, server_key] = parts[..] else {
                return Err(format!(
                    "a {prefix} line has the form {prefix}<iterations>$<salt>$<stored_key>$<server_key>"
                ));
            };
            let iterations = parse_iterations(iterations)?;
            let salt = decode_b64(salt, "salt")?;
            let stored_key = decode_b64(stored_key, "stored key")?;
            let server_key = decode_b64(server_key, "server key")?;
            if stored_key.len() != mechanism.key_len() || server_key.len() != mechanism.key_len() {
                return Err(format!(
                    "{} keys must decode to {} bytes",
                    mechanism.name(),
                    mechanism.key_len()
                ));
            }
            return Ok(Credential::Scram(
                mechanism,
                ScramCredentials {
                    salt,
                    iterations,
                    stored_key,
                    server_key,
                },
            ));
        }
    }
    Err(
        "unrecognised password hash (expected $7$ or $6$ from mosquitto_passwd, or \
         $argon2id$, $scram-sha-256$ or $scram-sha-512$ from midge passwd); if this line \
         holds a plain-text password, hash the file with `midge passwd -U FILE`"
            .to_owned(),
    )
}

/// Everything stored for one user.
#[derive(Clone, Default)]
struct UserEntry {
    password: Option<StoredHash>,
    /// Indexed like [`ScramMechanism::ALL`].
    scram: [Option<ScramCredentials>; 2],
}

fn mech_index(mechanism: ScramMechanism) -> usize {
    match mechanism {
        ScramMechanism::Sha256 => 0,
        ScramMechanism::Sha512 => 1,
    }
}

impl UserEntry {
    fn verify(&self, password: &[u8]) -> bool {
        if let Some(hash) = &self.password {
            return hash.verify(password);
        }
        // Only SCRAM lines: the strongest one decides.
        for mechanism in ScramMechanism::ALL.iter().rev() {
            if let Some(c) = &self.scram[mech_index(*mechanism)] {
                return c.verify_password(*mechanism, password);
            }
        }
        false
    }
}

/// A line of the file, in order: comments and blank lines are written back as they were.
#[derive(Clone)]
enum Item {
    Text(String),
    /// The position of a user's lines (where its first line was, or appended when new).
    User(String),
}

/// Whether parsing hashes plain-text passwords (`midge passwd -U`) or refuses them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PlainText {
    Refuse,
    Hash,
}

const MEMORY_FILE_NAME: &str = "<password file>";

/// A password file in memory. Cheap to share behind an `Arc`; changes are made on a copy and
/// swapped in with [`PasswordAuthenticator::reload`].
#[derive(Clone)]
pub struct PasswordFile {
    items: Vec<Item>,
    users: HashMap<String, UserEntry>,
    params: HashParams,
}

impl Default for PasswordFile {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// An empty file with the default ([`HashParams::OWASP`]) parameters.
    pub fn new() -> Self {
        PasswordFile {
            items: Vec::new(),
            users: HashMap::new(),
            params: HashParams::default(),
        }
    }

    /// The same file, hashing new passwords with `params` (tests use cheap ones).
    pub fn with_params(mut self, params: HashParams) -> Self {
        self.params = params;
        self
    }

    /// The parameters new hashes get.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Reads and parses a password file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PasswordFileError> {
        let path = path.as_ref();
        let text = read(path)?;
        Self::parse_inner(
            &text,
            &path.display().to_string(),
            PlainText::Refuse,
            HashParams::default(),
        )
        .map(|(file, _)| file)
    }

    /// Parses the text of a password file (errors name the file `<password file>`).
    pub fn parse(text: &str) -> Result<Self, PasswordFileError> {
        Self::parse_inner(
            text,
            MEMORY_FILE_NAME,
            PlainText::Refuse,
            HashParams::default(),
        )
        .map(|(file, _)| file)
    }

    /// Reads a file that may hold plain-text `user:password` lines and hashes every entry
    /// that is not already a hash (with [`HashScheme::Argon2idWithScram`] and `params`), as
    /// `mosquitto_passwd -U` does. Returns the file and how many entries were hashed. The
    /// plain password is everything after the first `:`, without surrounding white space.
    pub fn load_hashing_plain(
        path: impl AsRef<Path>,
        params: HashParams,
    ) -> Result<(Self, usize), PasswordFileError> {
        let path = path.as_ref();
        let text = read(path)?;
        Self::parse_inner(&text, &path.display().to_string(), PlainText::Hash, params)
    }

    /// [`load_hashing_plain`](Self::load_hashing_plain) on text in memory.
    pub fn parse_hashing_plain(
        text: &str,
        params: HashParams,
    ) -> Result<(Self, usize), PasswordFileError> {
        Self::parse_inner(text, MEMORY_FILE_NAME, PlainText::Hash, params)
    }

    fn parse_inner(
        text: &str,
        file_name: &str,
        plain: PlainText,
        params: HashParams,
    ) -> Result<(Self, usize), PasswordFileError> {
        let mut file = PasswordFile::new().with_params(params);
        // Per user: the line of its password line and of each SCRAM line, for duplicates.
        let mut seen: HashMap<String, [Option<usize>; 3]> = HashMap::new();
        let mut hashed = 0;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let syntax = |message: String| PasswordFileError::Syntax {
                file: file_name.to_owned(),
                line,
                message,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                file.items.push(Item::Text(raw.to_owned()));
                continue;
            }
            let Some((user, secret)) = trimmed.split_once(':') else {
                return Err(syntax(
                    "expected `user:hash` but the line has no ':'".to_owned(),
                ));
            };
            let user = user.trim();
            let secret = secret.trim();
            if user.is_empty() {
                return Err(syntax("empty user name before ':'".to_owned()));
            }
            if secret.is_empty() {
                return Err(syntax(format!(
                    "user {user:?} has no password hash after ':'"
                )));
            }
            let credential = if plain == PlainText::Hash && !looks_like_hash(secret) {
                None
            } else {
                Some(
                    parse_credential(secret)
                        .map_err(|reason| syntax(format!("user {user:?}: {reason}")))?,
                )
            };
            let slot = match &credential {
                None | Some(Credential::Password(_)) => 0,
                Some(Credential::Scram(m, _)) => 1 + mech_index(*m),
            };
            let lines = seen.entry(user.to_owned()).or_default();
            if let Some(first) = lines[slot] {
                let what = match slot {
                    0 => "password line".to_owned(),
                    s => format!("{} line", ScramMechanism::ALL[s - 1].name()),
                };
                return Err(syntax(format!(
                    "duplicate {what} for user {user:?} (first on line {first}); delete one of them"
                )));
            }
            lines[slot] = Some(line);
            if !file.users.contains_key(user) {
                file.items.push(Item::User(user.to_owned()));
            }
            let entry = file.users.entry(user.to_owned()).or_default();
            match credential {
                Some(Credential::Password(hash)) => entry.password = Some(hash),
                Some(Credential::Scram(m, c)) => entry.scram[mech_index(m)] = Some(c),
                None => {
                    let fresh =
                        make_entry(secret.as_bytes(), HashScheme::Argon2idWithScram, &params)?;
                    entry.password = fresh.password;
                    for (i, c) in fresh.scram.into_iter().enumerate() {
                        if c.is_some() {
                            lines[1 + i] = Some(line);
                            entry.scram[i] = c;
                        }
                    }
                    hashed += 1;
                }
            }
        }
        Ok((file, hashed))
    }

    /// Writes the file atomically (temporary file in the same directory, then rename), with
    /// mode 0600 on unix.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PasswordFileError> {
        let path = path.as_ref();
        write_atomic(path, self.to_text().as_bytes()).map_err(|source| PasswordFileError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The file's text: comments and blank lines where they were, each user's lines at the
    /// place of its first line, new users at the end.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            match item {
                Item::Text(text) => {
                    out.push_str(text);
                    out.push('\n');
                }
                Item::User(user) => {
                    let Some(entry) = self.users.get(user) else {
                        continue;
                    };
                    if let Some(hash) = &entry.password {
                        out.push_str(&format!("{user}:{}\n", hash.render()));
                    }
                    for mechanism in ScramMechanism::ALL {
                        if let Some(c) = &entry.scram[mech_index(mechanism)] {
                            out.push_str(&format!(
                                "{user}:${}${}${}${}${}\n",
                                mechanism.file_tag(),
                                c.iterations,
                                B64.encode(&c.salt),
                                B64.encode(&c.stored_key),
                                B64.encode(&c.server_key),
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// True if `password` is the password of `user` (constant-time comparison). For an
    /// unknown user the password is checked against another user's hash and the result
    /// thrown away, so that the answer takes about as long as for a known user.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(entry) => entry.verify(password),
            None => {
                if let Some(decoy) = self.decoy() {
                    std::hint::black_box(decoy.verify(password));
                }
                false
            }
        }
    }

    /// The entry whose cost an unknown user pays: the first argon2 user (what new entries
    /// get), else the first user.
    fn decoy(&self) -> Option<&UserEntry> {
        let entries = || {
            self.items.iter().filter_map(|item| match item {
                Item::User(u) => self.users.get(u),
                Item::Text(_) => None,
            })
        };
        entries()
            .find(|e| matches!(e.password, Some(StoredHash::Argon2(_))))
            .or_else(|| entries().next())
    }

    /// Stores `password` for `user` with [`HashScheme::Argon2idWithScram`]: an argon2id line
    /// and SCRAM lines for both mechanisms, replacing whatever the user had.
    pub fn set(&mut self, user: &str, password: &[u8]) -> Result<(), PasswordFileError> {
        self.set_with(user, password, HashScheme::Argon2idWithScram)
    }

    /// Stores `password` for `user` with the given scheme, replacing whatever it had.
    pub fn set_with(
        &mut self,
        user: &str,
        password: &[u8],
        scheme: HashScheme,
    ) -> Result<(), PasswordFileError> {
        validate_user(user)?;
        let entry = make_entry(password, scheme, &self.params)?;
        if self.users.insert(user.to_owned(), entry).is_none() {
            self.items.push(Item::User(user.to_owned()));
        }
        Ok(())
    }

    /// Removes `user` and all its lines. Returns false if there was no such user.
    pub fn remove(&mut self, user: &str) -> bool {
        if self.users.remove(user).is_none() {
            return false;
        }
        self.items
            .retain(|item| !matches!(item, Item::User(u) if u == user));
        true
    }

    /// Checks that `user` can be stored in a password file (non-empty, at most 65535 bytes,
    /// no `:`, no control characters, no leading or trailing white space, no leading `#`),
    /// as [`set`](Self::set) does; lets a tool refuse a name before prompting for a password.
    pub fn check_user_name(user: &str) -> Result<(), PasswordFileError> {
        validate_user(user)
    }

    /// The users, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> + '_ {
        self.items.iter().filter_map(|item| match item {
            Item::User(u) => Some(u.as_str()),
            Item::Text(_) => None,
        })
    }

    /// True if `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True if there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The SCRAM credentials of `user` for `mechanism`, if the file has that line.
    pub fn scram_credentials(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredentials> {
        self.users.get(user)?.scram[mech_index(mechanism)].as_ref()
    }
}

fn read(path: &Path) -> Result<String, PasswordFileError> {
    std::fs::read_to_string(path).map_err(|source| PasswordFileError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A user name must survive a write and a read of the file unchanged.
fn validate_user(user: &str) -> Result<(), PasswordFileError> {
    let reason = if user.is_empty() {
        Some("must not be empty")
    } else if user.len() > 65_535 {
        Some("must be at most 65535 bytes long")
    } else if user.contains(':') {
        Some("must not contain ':'")
    } else if user.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else if user.trim() != user {
        Some("must not start or end with white space")
    } else if user.starts_with('#') {
        Some("must not start with '#' (the line would be a comment)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PasswordFileError::InvalidUser {
            user: user.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn make_entry(
    password: &[u8],
    scheme: HashScheme,
    params: &HashParams,
) -> Result<UserEntry, PasswordFileError> {
    match scheme {
        HashScheme::Argon2idWithScram => {
            let argon = Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(
                    params.argon2_memory_kib,
                    params.argon2_iterations,
                    params.argon2_parallelism,
                    None,
                )?,
            );
            let mut salt = [0u8; ARGON2_SALT_LEN];
            random_bytes(&mut salt).map_err(PasswordFileError::Random)?;
            let salt = SaltString::encode_b64(&salt)?;
            let phc = argon.hash_password(password, &salt)?.to_string();
            let mut scram: [Option<ScramCredentials>; 2] = [None, None];
            for mechanism in ScramMechanism::ALL {
                scram[mech_index(mechanism)] = Some(ScramCredentials::generate(
                    mechanism,
                    password,
                    params.scram_iterations,
                )?);
            }
            Ok(UserEntry {
                password: Some(StoredHash::Argon2(phc)),
                scram,
            })
        }
        HashScheme::MosquittoPbkdf2 => {
            let mut salt = vec![0u8; MOSQUITTO_SALT_LEN];
            random_bytes(&mut salt).map_err(PasswordFileError::Random)?;
            let mut hash = vec![0u8; SHA512_LEN];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, MOSQUITTO_PBKDF2_ITERATIONS, &mut hash);
            Ok(UserEntry {
                password: Some(StoredHash::Pbkdf2Sha512 {
                    iterations: MOSQUITTO_PBKDF2_ITERATIONS,
                    salt,
                    hash,
                }),
                scram: [None, None],
            })
        }
    }
}

/// Authenticates CONNECT user names and passwords against a [`PasswordFile`].
///
/// - no user name: [`Decision::Defer`] (anonymous access is the listener's decision);
/// - a user name without a password, an unknown user or a wrong password: [`Decision::Deny`];
/// - a user name whose password verifies: [`Decision::Allow`].
///
/// Hashing is slow by design (argon2id with OWASP parameters takes tens of milliseconds):
/// call it away from the tasks that move messages.
pub struct PasswordAuthenticator {
    file: ArcSwap<PasswordFile>,
}

impl fmt::Debug for PasswordAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordAuthenticator")
            .field("users", &self.file.load().len())
            .finish()
    }
}

impl PasswordAuthenticator {
    /// Authenticates against `file`.
    pub fn new(file: PasswordFile) -> Self {
        PasswordAuthenticator {
            file: ArcSwap::from_pointee(file),
        }
    }

    /// Replaces the file; checks already running finish against the old one.
    pub fn reload(&self, file: PasswordFile) {
        self.file.store(Arc::new(file));
    }

    /// The current file.
    pub fn file(&self) -> Arc<PasswordFile> {
        self.file.load_full()
    }

    /// The SCRAM credentials of `user` for `mechanism`, for [`crate::ScramServer::start`].
    pub fn scram_credentials(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredentials> {
        self.file.load().scram_credentials(user, mechanism).cloned()
    }
}

impl Authenticator for PasswordAuthenticator {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Decision {
        let Some(user) = req.username else {
            return Decision::Defer;
        };
        let Some(password) = req.password else {
            return Decision::Deny;
        };
        // A full Arc, not a short-lived guard: hashing takes a while.
        if self.file.load_full().verify(user, password) {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Cheap parameters: hashing in tests must not take seconds.
    pub(crate) const FAST: HashParams = HashParams {
        argon2_memory_kib: 8,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        scram_iterations: 2,
    };

    // Written by Debian's mosquitto_passwd 2.0.11 (`-b` and `-H sha512 -b`).
    const ALICE_7: &str = "alice:$7$101$OJHkn3vgqyToMBLZ$iw8fTSKvG4Y+MnStGhpDKvJ3m3rPlifXAePdidKE8wJGJvgwYU+J8d+dJ+E4FUIDNny2FHVO1/Nx0rbJOoL5Ww==";
    const CAROL_6: &str = "carol:$6$BPLrnLoablMjHXnW$yXtH0DYcv7Cq8wFVAnL+20TrbeY/D1OXbbbIr4gJGTv/pJTwf6r3u1X3aXNPCWApRpxVZvIl1tH6a98N+l9qSw==";

    fn request<'a>(user: Option<&'a str>, password: Option<&'a [u8]>) -> AuthRequest<'a> {
        AuthRequest {
            client_id: "c1",
            username: user,
            password,
            peer: None,
            cert_identity: None,
        }
    }

    #[test]
    fn verifies_mosquitto_hashes() {
        let file = PasswordFile::parse(&format!("{ALICE_7}\n{CAROL_6}\n")).unwrap();
        assert!(file.verify("alice", b"wonderland"));
        assert!(!file.verify("alice", b"Wonderland"));
        assert!(file.verify("carol", b"secret6"));
        assert!(!file.verify("carol", b"secret"));
        assert!(!file.verify("nobody", b"wonderland"));
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "carol"]);
    }

    #[test]
    fn set_writes_argon2id_and_scram_and_round_trips() {
        let mut file = PasswordFile::new().with_params(FAST);
        file.set("dora", b"explorer").unwrap();
        assert!(file.verify("dora", b"explorer"));
        assert!(!file.verify("dora", b"explorer "));
        let text = file.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("dora:$argon2id$v=19$m=8,t=1,p=1$"));
        assert!(lines[1].starts_with("dora:$scram-sha-256$2$"));
        assert!(lines[2].starts_with("dora:$scram-sha-512$2$"));

        let reread = PasswordFile::parse(&text).unwrap();
        assert!(reread.verify("dora", b"explorer"));
        assert!(!reread.verify("dora", b"nope"));
        for mechanism in ScramMechanism::ALL {
            let c = reread.scram_credentials("dora", mechanism).unwrap();
            assert!(c.verify_password(mechanism, b"explorer"));
            assert_eq!(Some(c), file.scram_credentials("dora", mechanism));
        }
        assert_eq!(reread.to_text(), text);
    }

    #[test]
    fn default_params_are_owasp() {
        let p = PasswordFile::new().params();
        assert_eq!(
            (
                p.argon2_memory_kib,
                p.argon2_iterations,
                p.argon2_parallelism
            ),
            (19_456, 2, 1)
        );
        assert_eq!(p.scram_iterations, 4096);
    }

    #[test]
    fn scram_lines_are_ignored_when_a_password_line_exists() {
        // The SCRAM line was made from another password: verify() must use the argon2 line.
        let mut file = PasswordFile::new().with_params(FAST);
        file.set("u", b"right").unwrap();
        let other = ScramCredentials::derive(ScramMechanism::Sha512, b"other", b"salt", 2);
        file.users.get_mut("u").unwrap().scram[1] = Some(other);
        assert!(file.verify("u", b"right"));
        assert!(!file.verify("u", b"other"));
    }

    #[test]
    fn scram_only_user_verifies_with_its_scram_line() {
        let c = ScramCredentials::derive(ScramMechanism::Sha256, b"pw", b"salty", 3);
        let line = format!(
            "eve:$scram-sha-256$3${}${}${}",
            B64.encode(&c.salt),
            B64.encode(&c.stored_key),
            B64.encode(&c.server_key)
        );
        let file = PasswordFile::parse(&line).unwrap();
        assert!(file.verify("eve", b"pw"));
        assert!(!file.verify("eve", b"pW"));
        assert_eq!(
            file.scram_credentials("eve", ScramMechanism::Sha256),
            Some(&c)
        );
        assert_eq!(file.scram_credentials("eve", ScramMechanism::Sha512), None);
    }

    #[test]
    fn mosquitto_scheme_writes_a_7_line_mosquitto_can_read() {
        let mut file = PasswordFile::new();
        file.set_with("m", b"pw", HashScheme::MosquittoPbkdf2)
            .unwrap();
        let text = file.to_text();
        assert!(text.starts_with("m:$7$101$"), "{text}");
        assert_eq!(text.lines().count(), 1);
        let salt = text.split('$').nth(3).unwrap();
        assert_eq!(B64.decode(salt).unwrap().len(), MOSQUITTO_SALT_LEN);
        assert!(PasswordFile::parse(&text).unwrap().verify("m", b"pw"));
    }

    #[test]
    fn remove_and_comments_survive() {
        let text = format!("# users\n\n{ALICE_7}\n  # indented comment\n{CAROL_6}\n");
        let mut file = PasswordFile::parse(&text).unwrap().with_params(FAST);
        assert_eq!(file.to_text(), text);
        assert!(file.remove("alice"));
        assert!(!file.remove("alice"));
        assert!(!file.verify("alice", b"wonderland"));
        file.set("zed", b"z").unwrap();
        let out = file.to_text();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..4], ["# users", "", "  # indented comment", CAROL_6]);
        assert!(lines[4].starts_with("zed:$argon2id$"));
        assert_eq!(file.len(), 2);
        assert!(file.contains("zed"));
    }

    #[test]
    fn set_replaces_in_place() {
        let mut file = PasswordFile::parse(&format!("{ALICE_7}\n{CAROL_6}\n"))
            .unwrap()
            .with_params(FAST);
        file.set("alice", b"new").unwrap();
        assert!(file.verify("alice", b"new"));
        assert!(!file.verify("alice", b"wonderland"));
        let out = file.to_text();
        assert!(out.starts_with("alice:$argon2id$"), "{out}");
        assert!(out.ends_with(&format!("{CAROL_6}\n")));
    }

    #[test]
    fn rejects_bad_user_names() {
        let mut file = PasswordFile::new().with_params(FAST);
        for bad in ["", "a:b", "tab\there", " lead", "trail ", "#hash", "nl\n"] {
            assert!(
                matches!(
                    file.set(bad, b"x"),
                    Err(PasswordFileError::InvalidUser { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(file.is_empty());
        assert!(PasswordFile::check_user_name("a:b").is_err());
        assert!(PasswordFile::check_user_name("émile").is_ok());
        file.set("ok name with spaces", b"x").unwrap();
        assert!(PasswordFile::parse(&file.to_text())
            .unwrap()
            .verify("ok name with spaces", b"x"));
    }

    #[test]
    fn syntax_errors_name_the_line_and_not_the_hash() {
        let cases: &[(&str, usize, &str)] = &[
            ("alice\n", 1, "no ':'"),
            ("# c\n:$6$abc$def\n", 2, "empty user name"),
            ("bob:\n", 1, "no password hash"),
            ("bob:plaintext\n", 1, "midge passwd -U"),
            ("bob:$7$0$c2FsdA==$aGFzaA==\n", 1, "iteration count"),
            ("bob:$7$101$c2FsdA==$aGFzaA==\n", 1, "64 bytes"),
            ("bob:$7$101$c2FsdA==\n", 1, "$7$<iterations>"),
            ("bob:$6$!!!$aGFzaA==\n", 1, "salt is not valid base64"),
            ("bob:$argon2id$garbage\n", 1, "argon2"),
            (
                "bob:$scram-sha-256$1$c2FsdA==$aGFzaA==$aGFzaA==\n",
                1,
                "32 bytes",
            ),
        ];
        for (text, line, needle) in cases {
            match PasswordFile::parse(text) {
                Err(e @ PasswordFileError::Syntax { .. }) => {
                    let shown = e.to_string();
                    assert!(
                        shown.starts_with(&format!("<password file>:{line}: ")),
                        "{shown}"
                    );
                    assert!(shown.contains(needle), "{shown}");
                    assert!(!shown.contains("aGFzaA"), "hash leaked: {shown}");
                    assert!(!shown.contains("plaintext"), "password leaked: {shown}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn duplicates_are_errors_but_scram_lines_join_the_user() {
        let err = PasswordFile::parse(&format!("{ALICE_7}\n{ALICE_7}\n")).unwrap_err();
        assert!(err.to_string().contains("first on line 1"), "{err}");

        let mut file = PasswordFile::new().with_params(FAST);
        file.set("u", b"p").unwrap();
        let text = file.to_text();
        let scram_line = text.lines().nth(1).unwrap();
        let doubled = format!("{text}{scram_line}\n");
        let err = PasswordFile::parse(&doubled).unwrap_err();
        assert!(
            err.to_string().contains("duplicate SCRAM-SHA-256 line"),
            "{err}"
        );
    }

    #[test]
    fn hashing_plain_text_keeps_existing_hashes() {
        let text = format!("# plain\nerin: plain pass \n{ALICE_7}\nfrank:a:b\n");
        let (file, hashed) = PasswordFile::parse_hashing_plain(&text, FAST).unwrap();
        assert_eq!(hashed, 2);
        assert!(file.verify("erin", b"plain pass"));
        assert!(file.verify("frank", b"a:b"));
        assert!(file.verify("alice", b"wonderland"));
        let out = file.to_text();
        assert!(out.contains(&format!("\n{ALICE_7}\n")));
        assert!(!out.contains("plain pass"));
        assert!(out.starts_with("# plain\nerin:$argon2id$"));
        // Hashing again changes nothing.
        let (again, hashed) = PasswordFile::parse_hashing_plain(&out, FAST).unwrap();
        assert_eq!(hashed, 0);
        assert_eq!(again.to_text(), out);
    }

    #[test]
    fn decoy_prefers_argon2() {
        let mut file = PasswordFile::parse(&format!("{CAROL_6}\n"))
            .unwrap()
            .with_params(FAST);
        assert!(matches!(
            file.decoy().and_then(|e| e.password.as_ref()),
            Some(StoredHash::Sha512 { .. })
        ));
        file.set("z", b"z").unwrap();
        assert!(matches!(
            file.decoy().and_then(|e| e.password.as_ref()),
            Some(StoredHash::Argon2(_))
        ));
        assert!(PasswordFile::new().decoy().is_none());
    }

    #[test]
    fn authenticator_decisions_and_reload() {
        let auth = PasswordAuthenticator::new(PasswordFile::parse(ALICE_7).unwrap());
        let d = |u, p| auth.authenticate(&request(u, p));
        assert_eq!(d(Some("alice"), Some(b"wonderland")), Decision::Allow);
        assert_eq!(d(Some("alice"), Some(b"nope")), Decision::Deny);
        assert_eq!(d(Some("alice"), None), Decision::Deny);
        assert_eq!(d(Some("mallory"), Some(b"wonderland")), Decision::Deny);
        assert_eq!(d(None, None), Decision::Defer);
        assert_eq!(d(None, Some(b"wonderland")), Decision::Defer);

        auth.reload(PasswordFile::parse(CAROL_6).unwrap());
        assert_eq!(d(Some("alice"), Some(b"wonderland")), Decision::Deny);
        assert_eq!(d(Some("carol"), Some(b"secret6")), Decision::Allow);
        assert_eq!(auth.file().len(), 1);
        assert!(!format!("{auth:?}").contains("$6$"));
    }

    #[test]
    fn debug_never_shows_hashes() {
        let file = PasswordFile::parse(ALICE_7).unwrap();
        let shown = format!("{file:?}");
        assert!(
            !shown.contains("$7$") && !shown.contains("alice"),
            "{shown}"
        );
    }
}
