//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) for MQTT 5 enhanced authentication,
//! sans-IO: messages in, messages out; the caller moves them in CONNECT / AUTH / CONNACK
//! (Authentication Method = the mechanism name, Authentication Data = the message):
//!
//! ```text
//! client                                   server
//! CONNECT  client-first  ───────────────►  ScramServer::start
//!          ◄───────────────  server-first  AUTH 0x18 (continue)
//! AUTH     client-final  ───────────────►  ScramServerState::finish
//!          ◄───────────────  server-final  CONNACK 0x00 (success)
//! ```
//!
//! Scope and invariants:
//! - No channel binding: the gs2 header must be `n,,` (or `y,,`, which a client sends when it
//!   could bind but the server does not offer a `-PLUS` mechanism); `p=` and an authzid are
//!   refused.
//! - User names are compared after `=2C`/`=3D` decoding; passwords are used as the given
//!   bytes. SASLprep is not applied, which changes nothing for ASCII.
//! - The server answers an unknown user exactly like a known one: a fake but stable salt
//!   (HMAC of the user name under a per-process secret) and the same iteration count, and the
//!   exchange fails at the proof with the same error as a wrong password.
//! - Key comparisons are constant-time.

use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::util::{random_bytes, B64};

/// Iteration count for new credentials and for unknown users: the minimum RFC 7677 asks for.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// A client refuses a server-first message asking for more iterations than this (a hostile
/// server could otherwise make the client burn CPU for minutes).
pub const MAX_CLIENT_ITERATIONS: u32 = 10_000_000;

/// Length in bytes of the salt of newly generated credentials.
const SALT_LEN: usize = 16;

/// Random bytes in a nonce (encoded as base64, which never contains `,`).
const NONCE_BYTES: usize = 18;

/// A SCRAM mechanism (hash function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256` (RFC 7677).
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms, strongest last.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name, used as MQTT 5 Authentication Method: `SCRAM-SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism for an Authentication Method; names are matched exactly (SASL
    /// mechanism names are upper case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The tag of this mechanism in the password file: `scram-sha-256`.
    pub(crate) fn file_tag(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "scram-sha-256",
            ScramMechanism::Sha512 => "scram-sha-512",
        }
    }

    /// Output length of the hash function in bytes (32 or 64): the length of StoredKey,
    /// ServerKey and proofs.
    pub fn key_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => hmac_sha256(key, data).to_vec(),
            ScramMechanism::Sha512 => {
                // HMAC accepts keys of any length; new_from_slice cannot fail for it.
                let mut mac = match Hmac::<Sha512>::new_from_slice(key) {
                    Ok(mac) => mac,
                    Err(_) => return Vec::new(),
                };
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi()` of RFC 5802: PBKDF2 with HMAC of this hash, output one hash long.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length.
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// What a server stores for one user and one mechanism (RFC 5802 section 3): enough to
/// check a client's proof and to prove itself, not enough to log in as the user.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The salt given to the client.
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// Derives the credentials of `password` with a given salt and iteration count.
    pub fn derive(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let salted = mechanism.salted_password(password, salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
        }
    }

    /// Derives the credentials of `password` with a fresh random 16-byte salt.
    pub fn generate(
        mechanism: ScramMechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramError> {
        if iterations == 0 {
            return Err(ScramError::InvalidIterations);
        }
        let mut salt = [0u8; SALT_LEN];
        random_bytes(&mut salt).map_err(ScramError::Random)?;
        Ok(Self::derive(mechanism, password, &salt, iterations))
    }

    /// True if `password` produces these credentials (constant-time comparison). Costs one
    /// PBKDF2 run of `iterations`.
    pub fn verify_password(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        let salted = mechanism.salted_password(password, &self.salt, self.iterations);
        let stored_key = mechanism.hash(&mechanism.hmac(&salted, b"Client Key"));
        stored_key.ct_eq(&self.stored_key).into()
    }
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow the RFC 5802 grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=`); midge offers no `-PLUS` mechanism.
    #[error("SCRAM channel binding (p=) is not supported; use the gs2 header \"n,,\"")]
    ChannelBindingNotSupported,
    /// The client sent an authorization identity (`a=`).
    #[error("SCRAM authorization identity (a=) is not supported")]
    AuthzidNotSupported,
    /// A mandatory extension (`m=`) was sent.
    #[error("SCRAM mandatory extensions (m=) are not supported")]
    ExtensionNotSupported,
    /// The nonce in a later message is not the one agreed on.
    #[error("SCRAM nonce does not match the exchange")]
    NonceMismatch,
    /// The channel binding attribute does not repeat the gs2 header.
    #[error("SCRAM channel binding data does not match the gs2 header")]
    ChannelBindingMismatch,
    /// An iteration count of 0, or above [`MAX_CLIENT_ITERATIONS`] on the client.
    #[error("SCRAM iteration count out of range")]
    InvalidIterations,
    /// Server side: wrong password or unknown user (deliberately indistinguishable).
    #[error("SCRAM authentication failed")]
    AuthenticationFailed,
    /// Client side: the server's signature is wrong, so the server does not know the
    /// credentials: it is not the server it claims to be.
    #[error("SCRAM server signature is invalid: the server is not authentic")]
    ServerSignatureMismatch,
    /// Client side: the server answered with `e=<value>`.
    #[error("SCRAM server reported an error: {0}")]
    ServerError(String),
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(getrandom::Error),
}

impl ScramError {
    /// The RFC 5802 `server-error-value` a server sends for this error.
    pub fn server_error_value(&self) -> &'static str {
        match self {
            ScramError::Malformed(_) => "invalid-encoding",
            ScramError::ChannelBindingNotSupported => "channel-binding-not-supported",
            ScramError::ExtensionNotSupported => "extensions-not-supported",
            ScramError::ChannelBindingMismatch => "channel-bindings-dont-match",
            ScramError::AuthenticationFailed => "invalid-proof",
            ScramError::AuthzidNotSupported
            | ScramError::NonceMismatch
            | ScramError::InvalidIterations
            | ScramError::ServerSignatureMismatch
            | ScramError::ServerError(_)
            | ScramError::Random(_) => "other-error",
        }
    }

    /// A server-final message reporting this error: `e=<server-error-value>`.
    pub fn server_final_message(&self) -> Vec<u8> {
        format!("e={}", self.server_error_value()).into_bytes()
    }
}

/// The per-process secret that derives fake salts for unknown users, so that the salt of an
/// unknown user is stable within a run (a changing salt would reveal that the user is
/// unknown) and unpredictable across runs.
fn process_secret() -> Result<&'static [u8; 32], ScramError> {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    if let Some(secret) = SECRET.get() {
        return Ok(secret);
    }
    let mut fresh = [0u8; 32];
    random_bytes(&mut fresh).map_err(ScramError::Random)?;
    Ok(SECRET.get_or_init(|| fresh))
}

fn random_nonce() -> Result<String, ScramError> {
    let mut bytes = [0u8; NONCE_BYTES];
    random_bytes(&mut bytes).map_err(ScramError::Random)?;
    Ok(B64.encode(bytes))
}

/// `printable` of RFC 5802: 0x21..=0x7E except `,`.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Decodes a `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("invalid '=' escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// Splits `s` into its first attribute's value (after `name=`) and the rest after the comma.
fn take_attr(s: &str, name: char) -> Result<(&str, Option<&str>), ScramError> {
    let (attr, rest) = match s.split_once(',') {
        Some((a, r)) => (a, Some(r)),
        None => (s, None),
    };
    let mut chars = attr.chars();
    if chars.next() != Some(name) || chars.next() != Some('=') {
        return Err(ScramError::Malformed("unexpected attribute"));
    }
    Ok((&attr[2..], rest))
}

/// Checks optional trailing extensions: each must be `<letter>=<value>`. Unknown
/// extensions are ignored, as RFC 5802 requires.
fn check_extensions(rest: Option<&str>) -> Result<(), ScramError> {
    for ext in rest.into_iter().flat_map(|r| r.split(',')) {
        let mut bytes = ext.bytes();
        let well_formed = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
            && bytes.next() == Some(b'=');
        if !well_formed {
            return Err(ScramError::Malformed("invalid attribute"));
        }
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(bytes).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// The server side of SCRAM. Holds only configuration; one [`ScramServerState`] per exchange.
#[derive(Debug, Clone)]
pub struct ScramServer {
    unknown_user_iterations: u32,
}

impl Default for ScramServer {
    fn default() -> Self {
        ScramServer {
            unknown_user_iterations: DEFAULT_ITERATIONS,
        }
    }
}

impl ScramServer {
    /// A server that announces `unknown_user_iterations` iterations for users it does not
    /// know. Set it to the iteration count of the stored credentials (by default
    /// [`DEFAULT_ITERATIONS`]) so that unknown users look like known ones.
    pub fn new(unknown_user_iterations: u32) -> Self {
        ScramServer {
            unknown_user_iterations: unknown_user_iterations.max(1),
        }
    }

    /// Handles the client-first message (the Authentication Data of CONNECT) and returns the
    /// server-first message (to send in AUTH with reason Continue Authentication) and the
    /// state that will check the client's proof.
    ///
    /// `lookup` returns the stored credentials of a user for this mechanism, or `None` when
    /// the user is unknown (or has no credentials for this mechanism): the exchange then goes
    /// on with fake credentials and fails in [`ScramServerState::finish`] exactly like a
    /// wrong password.
    pub fn start<F>(
        &self,
        mechanism: ScramMechanism,
        client_first: &[u8],
        lookup: F,
    ) -> Result<(Vec<u8>, ScramServerState), ScramError>
    where
        F: FnOnce(&str) -> Option<ScramCredentials>,
    {
        let server_nonce = random_nonce()?;
        let secret = process_secret()?;
        self.start_with(mechanism, client_first, lookup, &server_nonce, secret)
    }

    fn start_with<F>(
        &self,
        mechanism: ScramMechanism,
        client_first: &[u8],
        lookup: F,
        server_nonce: &str,
        secret: &[u8; 32],
    ) -> Result<(Vec<u8>, ScramServerState), ScramError>
    where
        F: FnOnce(&str) -> Option<ScramCredentials>,
    {
        let text = utf8(client_first)?;
        let (gs2_header, bare) = split_gs2_header(text)?;
        let (username, rest) = match bare.strip_prefix("m=") {
            Some(_) => return Err(ScramError::ExtensionNotSupported),
            None => take_attr(bare, 'n')?,
        };
        let username = decode_saslname(username)?;
        if username.is_empty() {
            return Err(ScramError::Malformed("empty user name"));
        }
        let rest = rest.ok_or(ScramError::Malformed("missing nonce"))?;
        let (client_nonce, extensions) = take_attr(rest, 'r')?;
        check_extensions(extensions)?;
        if !valid_nonce(client_nonce) {
            return Err(ScramError::Malformed("invalid client nonce"));
        }

        let (credentials, known) = match lookup(&username) {
            Some(c) if c.iterations > 0 && c.stored_key.len() == mechanism.key_len() => (c, true),
            _ => (
                fake_credentials(mechanism, &username, self.unknown_user_iterations, secret),
                false,
            ),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credentials.salt),
            credentials.iterations
        );
        let state = ScramServerState {
            mechanism,
            username,
            credentials,
            known,
            gs2_header: gs2_header.to_owned(),
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((server_first.into_bytes(), state))
    }
}

/// Splits `n,,bare` into the gs2 header (`n,,`) and the bare message.
fn split_gs2_header(text: &str) -> Result<(&str, &str), ScramError> {
    if text.starts_with("p=") {
        return Err(ScramError::ChannelBindingNotSupported);
    }
    if !(text.starts_with("n,") || text.starts_with("y,")) {
        return Err(ScramError::Malformed("gs2 header must start with \"n,\""));
    }
    let after_flag = &text[2..];
    let comma = after_flag
        .find(',')
        .ok_or(ScramError::Malformed("incomplete gs2 header"))?;
    if comma != 0 {
        return if after_flag.starts_with("a=") {
            Err(ScramError::AuthzidNotSupported)
        } else {
            Err(ScramError::Malformed("invalid gs2 header"))
        };
    }
    Ok((&text[..3], &text[3..]))
}

/// Credentials for a user that does not exist: a salt that is stable for the name within
/// this process, keys nobody can match (the state also remembers the user is unknown).
fn fake_credentials(
    mechanism: ScramMechanism,
    username: &str,
    iterations: u32,
    secret: &[u8; 32],
) -> ScramCredentials {
    let mut input = Vec::with_capacity(username.len() + 16);
    input.extend_from_slice(mechanism.file_tag().as_bytes());
    input.push(0);
    input.extend_from_slice(username.as_bytes());
    let salt = hmac_sha256(secret, &input)[..SALT_LEN].to_vec();
    input.push(1);
    let key = mechanism.hmac(secret, &input);
    ScramCredentials {
        salt,
        iterations,
        stored_key: mechanism.hash(&key),
        server_key: key,
    }
}

/// A server exchange waiting for the client-final message.
pub struct ScramServerState {
    mechanism: ScramMechanism,
    username: String,
    credentials: ScramCredentials,
    known: bool,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl fmt::Debug for ScramServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServerState")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramServerState {
    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The user name the client claimed (not yet authenticated).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks the client-final message (Authentication Data of the client's AUTH). On
    /// success returns the server-final message (send it in CONNACK) and the authenticated
    /// user name. On [`ScramError::AuthenticationFailed`] the user is unknown or the password
    /// wrong, deliberately indistinguishable.
    pub fn finish(self, client_final: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let text = utf8(client_final)?;
        let (without_proof, proof_b64) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("missing proof"))?;
        let (channel_binding, rest) = take_attr(without_proof, 'c')?;
        let channel_binding = B64
            .decode(channel_binding)
            .map_err(|_| ScramError::Malformed("invalid base64 in channel binding"))?;
        if channel_binding != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        let rest = rest.ok_or(ScramError::Malformed("missing nonce"))?;
        let (nonce, extensions) = take_attr(rest, 'r')?;
        check_extensions(extensions)?;
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| ScramError::Malformed("invalid base64 in proof"))?;
        let mechanism = self.mechanism;
        if proof.len() != mechanism.key_len() {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }

        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature =
            mechanism.hmac(&self.credentials.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        let matches: bool = mechanism
            .hash(&client_key)
            .ct_eq(&self.credentials.stored_key)
            .into();
        if !(matches && self.known) {
            return Err(ScramError::AuthenticationFailed);
        }
        let server_signature =
            mechanism.hmac(&self.credentials.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature));
        Ok((server_final.into_bytes(), self.username))
    }
}

/// The client side of SCRAM, before the server has answered.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: Vec<u8>,
    nonce: String,
    client_first_bare: String,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `username` with a fresh random nonce.
    pub fn new(
        mechanism: ScramMechanism,
        username: &str,
        password: &[u8],
    ) -> Result<Self, ScramError> {
        Ok(Self::with_nonce(
            mechanism,
            username,
            password,
            random_nonce()?,
        ))
    }

    fn with_nonce(
        mechanism: ScramMechanism,
        username: &str,
        password: &[u8],
        nonce: String,
    ) -> Self {
        let client_first_bare = format!("n={},r={nonce}", encode_saslname(username));
        ScramClient {
            mechanism,
            password: password.to_vec(),
            nonce,
            client_first_bare,
        }
    }

    /// The mechanism name to send as Authentication Method.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The client-first message (Authentication Data of CONNECT).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Handles the server-first message and returns the client-final message (send it in
    /// AUTH) and the state that verifies the server's final answer. Costs one PBKDF2 run of
    /// the iteration count the server asked for (at most [`MAX_CLIENT_ITERATIONS`]).
    pub fn handle_server_first(
        self,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, ScramClientFinish), ScramError> {
        let text = utf8(server_first)?;
        if text.starts_with("m=") {
            return Err(ScramError::ExtensionNotSupported);
        }
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_owned()));
        }
        let (nonce, rest) = take_attr(text, 'r')?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) || !valid_nonce(nonce)
        {
            return Err(ScramError::NonceMismatch);
        }
        let rest = rest.ok_or(ScramError::Malformed("missing salt"))?;
        let (salt, rest) = take_attr(rest, 's')?;
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::Malformed("invalid base64 in salt"))?;
        if salt.is_empty() {
            return Err(ScramError::Malformed("empty salt"));
        }
        let rest = rest.ok_or(ScramError::Malformed("missing iteration count"))?;
        let (iterations, extensions) = take_attr(rest, 'i')?;
        check_extensions(extensions)?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("invalid iteration count"))?;
        if iterations == 0 || iterations > MAX_CLIENT_ITERATIONS {
            return Err(ScramError::InvalidIterations);
        }

        let mechanism = self.mechanism;
        // c= repeats the gs2 header "n,," (base64 "biws").
        let without_proof = format!("c={},r={nonce}", B64.encode(b"n,,"));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let salted = mechanism.salted_password(&self.password, &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let client_signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let server_signature = mechanism.hmac(&server_key, auth_message.as_bytes());

        let client_final = format!("{without_proof},p={}", B64.encode(proof));
        Ok((
            client_final.into_bytes(),
            ScramClientFinish { server_signature },
        ))
    }
}

/// The client side of SCRAM after sending client-final: checks that the server knew the
/// credentials.
pub struct ScramClientFinish {
    server_signature: Vec<u8>,
}

impl fmt::Debug for ScramClientFinish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClientFinish").finish_non_exhaustive()
    }
}

impl ScramClientFinish {
    /// Verifies the server-final message (Authentication Data of CONNACK). `Ok` means the
    /// server proved it holds this user's credentials.
    pub fn verify_server_final(self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = utf8(server_final)?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_owned()));
        }
        let (signature, extensions) = take_attr(text, 'v')?;
        check_extensions(extensions)?;
        let signature = B64
            .decode(signature)
            .map_err(|_| ScramError::Malformed("invalid base64 in server signature"))?;
        if bool::from(signature.ct_eq(&self.server_signature)) {
            Ok(())
        } else {
            Err(ScramError::ServerSignatureMismatch)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    fn creds(mech: ScramMechanism, password: &[u8]) -> ScramCredentials {
        ScramCredentials::derive(mech, password, b"0123456789abcdef", 64)
    }

    /// RFC 7677 section 3, SCRAM-SHA-256, user "user", password "pencil".
    #[test]
    fn rfc7677_example_exchange() {
        let client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        let mech = ScramMechanism::Sha256;

        // Client side, with the RFC's nonce.
        let client =
            ScramClient::with_nonce(mech, "user", b"pencil", "rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(client.client_first(), client_first.as_bytes());
        let (final_msg, finish) = client.handle_server_first(server_first.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(final_msg).unwrap(), client_final);
        finish.verify_server_final(server_final.as_bytes()).unwrap();

        // Server side, with the RFC's salt and server nonce.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let stored = ScramCredentials::derive(mech, b"pencil", &salt, 4096);
        let server = ScramServer::default();
        let (first, state) = server
            .start_with(
                mech,
                client_first.as_bytes(),
                |u| (u == "user").then(|| stored.clone()),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                &SECRET,
            )
            .unwrap();
        assert_eq!(String::from_utf8(first).unwrap(), server_first);
        let (last, user) = state.finish(client_final.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(last).unwrap(), server_final);
        assert_eq!(user, "user");
    }

    fn round_trip(
        mech: ScramMechanism,
        stored_pw: &[u8],
        client_pw: &[u8],
    ) -> Result<String, ScramError> {
        let stored = creds(mech, stored_pw);
        let client = ScramClient::new(mech, "alice", client_pw)?;
        let (first, state) = ScramServer::default().start(mech, &client.client_first(), |u| {
            (u == "alice").then(|| stored.clone())
        })?;
        let (client_final, finish) = client.handle_server_first(&first)?;
        let (server_final, user) = state.finish(&client_final)?;
        finish.verify_server_final(&server_final)?;
        Ok(user)
    }

    #[test]
    fn round_trip_both_mechanisms() {
        for mech in ScramMechanism::ALL {
            assert_eq!(round_trip(mech, b"s3cret", b"s3cret").unwrap(), "alice");
        }
    }

    #[test]
    fn wrong_password_fails_at_the_proof() {
        for mech in ScramMechanism::ALL {
            assert!(matches!(
                round_trip(mech, b"s3cret", b"guess"),
                Err(ScramError::AuthenticationFailed)
            ));
        }
    }

    #[test]
    fn credentials_of_the_other_mechanism_are_refused() {
        // A SHA-256 record offered for a SHA-512 exchange is treated as unknown.
        let stored = creds(ScramMechanism::Sha256, b"pw");
        let client = ScramClient::new(ScramMechanism::Sha512, "alice", b"pw").unwrap();
        let (first, state) = ScramServer::default()
            .start(ScramMechanism::Sha512, &client.client_first(), |_| {
                Some(stored.clone())
            })
            .unwrap();
        let (client_final, _) = client.handle_server_first(&first).unwrap();
        assert!(matches!(
            state.finish(&client_final),
            Err(ScramError::AuthenticationFailed)
        ));
    }

    #[test]
    fn tampered_proof_fails() {
        let mech = ScramMechanism::Sha256;
        let stored = creds(mech, b"pw");
        let client = ScramClient::new(mech, "alice", b"pw").unwrap();
        let (first, state) = ScramServer::default()
            .start(mech, &client.client_first(), |_| Some(stored.clone()))
            .unwrap();
        let (client_final, _) = client.handle_server_first(&first).unwrap();
        let text = String::from_utf8(client_final).unwrap();
        let (head, proof) = text.rsplit_once(",p=").unwrap();
        let mut bytes = B64.decode(proof).unwrap();
        bytes[0] ^= 1;
        let tampered = format!("{head},p={}", B64.encode(bytes));
        assert!(matches!(
            state.finish(tampered.as_bytes()),
            Err(ScramError::AuthenticationFailed)
        ));
    }

    #[test]
    fn tampered_nonce_and_channel_binding_fail() {
        let mech = ScramMechanism::Sha256;
        let stored = creds(mech, b"pw");
        let start = || {
            let client = ScramClient::new(mech, "alice", b"pw").unwrap();
            let (first, state) = ScramServer::default()
                .start(mech, &client.client_first(), |_| Some(stored.clone()))
                .unwrap();
            let (client_final, _) = client.handle_server_first(&first).unwrap();
            (String::from_utf8(client_final).unwrap(), state)
        };
        let (msg, state) = start();
        let bad_nonce = msg.replacen(",r=", ",r=X", 1);
        assert!(matches!(
            state.finish(bad_nonce.as_bytes()),
            Err(ScramError::NonceMismatch)
        ));
        let (msg, state) = start();
        // "eSws" is base64 of "y,,": the client claims a header it did not send.
        let bad_cb = msg.replacen("c=biws", "c=eSws", 1);
        assert!(matches!(
            state.finish(bad_cb.as_bytes()),
            Err(ScramError::ChannelBindingMismatch)
        ));
    }

    #[test]
    fn forged_server_signature_is_detected() {
        let mech = ScramMechanism::Sha256;
        let stored = creds(mech, b"pw");
        let client = ScramClient::new(mech, "alice", b"pw").unwrap();
        let (first, _state) = ScramServer::default()
            .start(mech, &client.client_first(), |_| Some(stored.clone()))
            .unwrap();
        let (_, finish) = client.handle_server_first(&first).unwrap();
        let forged = format!("v={}", B64.encode([0u8; 32]));
        assert!(matches!(
            finish.verify_server_final(forged.as_bytes()),
            Err(ScramError::ServerSignatureMismatch)
        ));
    }

    #[test]
    fn unknown_user_looks_like_a_known_one() {
        let mech = ScramMechanism::Sha512;
        let server = ScramServer::default();
        let first_of = |user: &str| {
            let msg = format!("n,,n={user},r=abcdef");
            let (first, state) = server
                .start_with(mech, msg.as_bytes(), |_| None, "XYZ", &SECRET)
                .unwrap();
            (String::from_utf8(first).unwrap(), state)
        };
        let (a1, _) = first_of("ghost");
        let (a2, state) = first_of("ghost");
        let (b, _) = first_of("phantom");
        // Stable salt for the same name, different salt for another name, default iterations.
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert!(a1.ends_with(",i=4096"));
        let salt = a1.split(",s=").nth(1).unwrap().split(',').next().unwrap();
        assert_eq!(B64.decode(salt).unwrap().len(), SALT_LEN);

        // Even the proof computed from the fake salt fails with the wrong-password error.
        let client = ScramClient::with_nonce(mech, "ghost", b"anything", "abcdef".into());
        let (client_final, _) = client.handle_server_first(a2.as_bytes()).unwrap();
        assert!(matches!(
            state.finish(&client_final),
            Err(ScramError::AuthenticationFailed)
        ));
    }

    #[test]
    fn client_first_grammar() {
        let server = ScramServer::default();
        let start = |msg: &str| {
            server
                .start_with(
                    ScramMechanism::Sha256,
                    msg.as_bytes(),
                    |_| None,
                    "S",
                    &SECRET,
                )
                .map(|_| ())
        };
        assert!(start("n,,n=user,r=abc").is_ok());
        assert!(start("y,,n=user,r=abc").is_ok());
        assert!(start("n,,n=user,r=abc,x=ext").is_ok());
        assert!(matches!(
            start("p=tls-unique,,n=user,r=abc"),
            Err(ScramError::ChannelBindingNotSupported)
        ));
        assert!(matches!(
            start("n,a=admin,n=user,r=abc"),
            Err(ScramError::AuthzidNotSupported)
        ));
        assert!(matches!(
            start("n,,m=ext,n=user,r=abc"),
            Err(ScramError::ExtensionNotSupported)
        ));
        for bad in [
            "",
            "n",
            "n,",
            "x,,n=user,r=abc",
            "n,,r=abc",
            "n,,n=user",
            "n,,n=,r=abc",
            "n,,n=us=er,r=abc",
            "n,,n=user,r=",
            "n,,n=user,r=a,b",
        ] {
            assert!(
                matches!(start(bad), Err(ScramError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            server.start(ScramMechanism::Sha256, b"\xff\xfe", |_| None),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(decode_saslname("a=2").is_err());
        assert!(decode_saslname("a=41").is_err());

        // A user name with both characters survives a whole exchange.
        let mech = ScramMechanism::Sha256;
        let stored = creds(mech, b"pw");
        let client = ScramClient::new(mech, "a,b=c", b"pw").unwrap();
        let (first, state) = ScramServer::default()
            .start(mech, &client.client_first(), |u| {
                (u == "a,b=c").then(|| stored.clone())
            })
            .unwrap();
        let (client_final, _) = client.handle_server_first(&first).unwrap();
        assert_eq!(state.finish(&client_final).unwrap().1, "a,b=c");
    }

    #[test]
    fn client_rejects_bad_server_first() {
        let mech = ScramMechanism::Sha256;
        let client = || ScramClient::with_nonce(mech, "u", b"p", "abc".into());
        let err = |msg: &str| client().handle_server_first(msg.as_bytes()).unwrap_err();
        assert!(matches!(
            err("r=xyz,s=c2FsdA==,i=1"),
            ScramError::NonceMismatch
        ));
        assert!(matches!(
            err("r=abc,s=c2FsdA==,i=1"),
            ScramError::NonceMismatch
        ));
        assert!(matches!(
            err("r=abcd,s=c2FsdA==,i=0"),
            ScramError::InvalidIterations
        ));
        assert!(matches!(
            err("r=abcd,s=c2FsdA==,i=4294967295"),
            ScramError::InvalidIterations
        ));
        assert!(matches!(err("r=abcd,s=,i=1"), ScramError::Malformed(_)));
        assert!(matches!(
            err("r=abcd,s=c2FsdA==,i=x"),
            ScramError::Malformed(_)
        ));
        assert!(matches!(err("r=abcd,i=1"), ScramError::Malformed(_)));
        assert!(matches!(err("e=unknown-user"), ScramError::ServerError(e) if e == "unknown-user"));
        assert!(matches!(
            err("m=x,r=abcd,s=c2FsdA==,i=1"),
            ScramError::ExtensionNotSupported
        ));
    }

    #[test]
    fn server_error_messages() {
        assert_eq!(
            ScramError::AuthenticationFailed.server_final_message(),
            b"e=invalid-proof"
        );
        assert_eq!(
            ScramError::ChannelBindingNotSupported.server_error_value(),
            "channel-binding-not-supported"
        );
    }

    #[test]
    fn credentials_verify_password() {
        for mech in ScramMechanism::ALL {
            let c = ScramCredentials::generate(mech, b"pw", 16).unwrap();
            assert_eq!(c.salt.len(), SALT_LEN);
            assert_eq!(c.stored_key.len(), mech.key_len());
            assert_eq!(c.server_key.len(), mech.key_len());
            assert!(c.verify_password(mech, b"pw"));
            assert!(!c.verify_password(mech, b"pW"));
        }
        assert!(matches!(
            ScramCredentials::generate(ScramMechanism::Sha256, b"pw", 0),
            Err(ScramError::InvalidIterations)
        ));
        // Debug never shows the keys.
        let c = creds(ScramMechanism::Sha256, b"pw");
        let shown = format!("{c:?}");
        assert!(!shown.contains("stored_key"), "{shown}");
    }

    #[test]
    fn mechanism_names() {
        for mech in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_name(mech.name()), Some(mech));
            assert_eq!(mech.to_string(), mech.name());
        }
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(ScramMechanism::from_name("SCRAM-SHA-1"), None);
    }
}
