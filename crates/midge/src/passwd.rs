//! `midge passwd`: manage a password file, with `mosquitto_passwd`'s flags.
//!
//! ```text
//! midge passwd [-c] [-H HASH] FILE USER             prompt for the password (twice on a terminal)
//! midge passwd [-c] [-H HASH] -b FILE USER PASSWORD password on the command line
//! midge passwd -D FILE USER                         delete a user
//! midge passwd -U FILE                              hash the plain-text `user:password` lines in place
//! ```
//!
//! New passwords get an argon2id line plus SCRAM-SHA-256/512 lines (so the user can log in
//! with a password or with MQTT 5 SCRAM); `-H sha512-pbkdf2` writes mosquitto's `$7$`
//! instead, for a file mosquitto must read too. Every change rewrites the file atomically
//! with mode 0600, keeping comments and the order of users.

use std::io::{self, BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use midge_auth::{HashParams, HashScheme, PasswordFile, PasswordFileError};

/// Longest password accepted: the MQTT limit for the Password field.
const MAX_PASSWORD_BYTES: usize = 65_535;

/// Options of `midge passwd` (mosquitto_passwd's flags).
#[derive(Debug, clap::Args)]
#[command(override_usage = "midge passwd [-c] [-H HASH] FILE USER\n       \
                            midge passwd [-c] [-H HASH] -b FILE USER PASSWORD\n       \
                            midge passwd -D FILE USER\n       \
                            midge passwd -U FILE")]
pub struct PasswdArgs {
    /// Create a new password file; overwrites an existing one.
    #[arg(short = 'c', conflicts_with_all = ["delete", "update"])]
    create: bool,
    /// Batch mode: the password is the third argument instead of being prompted for.
    #[arg(short = 'b', conflicts_with_all = ["delete", "update"])]
    batch: bool,
    /// Delete USER from FILE.
    #[arg(short = 'D', conflicts_with = "update")]
    delete: bool,
    /// Hash, in place, every `user:password` line of FILE that is not already a hash.
    #[arg(short = 'U')]
    update: bool,
    /// Hash for the new password: argon2id (with SCRAM lines) or sha512-pbkdf2 (mosquitto's $7$).
    #[arg(
        short = 'H',
        value_enum,
        default_value = "argon2id",
        conflicts_with_all = ["delete", "update"]
    )]
    hash: HashArg,
    /// The password file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The user to add, change or delete.
    #[arg(value_name = "USER")]
    username: Option<String>,
    /// The password (with -b only; visible to other users in the process list).
    #[arg(value_name = "PASSWORD")]
    password: Option<String>,
}

/// Values of `-H`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HashArg {
    /// argon2id, plus SCRAM-SHA-256 and SCRAM-SHA-512 credentials.
    #[value(name = "argon2id")]
    Argon2id,
    /// PBKDF2-SHA512, 101 iterations: `$7$`, as mosquitto_passwd writes it.
    #[value(name = "sha512-pbkdf2")]
    Sha512Pbkdf2,
}

/// Runs `midge passwd`.
pub fn run(args: PasswdArgs) -> anyhow::Result<()> {
    run_with(args, HashParams::default(), read_password)
}

/// `run` with the hashing cost and the password prompt as parameters (tests use cheap
/// hashing and no terminal).
fn run_with(
    args: PasswdArgs,
    params: HashParams,
    prompt: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<()> {
    let path = args.file.as_path();
    if args.update {
        if args.username.is_some() {
            bail!("-U takes only the password file: midge passwd -U FILE");
        }
        let (file, _hashed) = PasswordFile::load_hashing_plain(path, params)?;
        file.save(path)?;
        return Ok(());
    }

    let Some(user) = args.username.as_deref() else {
        bail!("missing USER: midge passwd [-c] [-b] FILE USER [PASSWORD]");
    };
    PasswordFile::check_user_name(user)?;

    if args.delete {
        if args.password.is_some() {
            bail!("-D takes only FILE and USER: midge passwd -D FILE USER");
        }
        let mut file = load_existing(path)?;
        if !file.remove(user) {
            bail!("user {user:?} not found in {}", path.display());
        }
        file.save(path)?;
        return Ok(());
    }

    // Open the file before asking for a password, so that a wrong path fails at once.
    let mut file = if args.create {
        PasswordFile::new()
    } else {
        load_existing(path)?
    }
    .with_params(params);
    let password = match (args.batch, args.password) {
        (true, Some(password)) => password.into_bytes(),
        (true, None) => {
            bail!("-b needs the password as third argument: midge passwd -b FILE USER PASSWORD")
        }
        (false, Some(_)) => bail!(
            "a password on the command line needs -b (and is visible to other users in the \
             process list); leave it out to be prompted"
        ),
        (false, None) => prompt()?,
    };
    if password.len() > MAX_PASSWORD_BYTES {
        bail!("the password is longer than {MAX_PASSWORD_BYTES} bytes");
    }
    let scheme = match args.hash {
        HashArg::Argon2id => HashScheme::Argon2idWithScram,
        HashArg::Sha512Pbkdf2 => HashScheme::MosquittoPbkdf2,
    };
    file.set_with(user, &password, scheme)?;
    file.save(path)?;
    Ok(())
}

/// Loads a file that must exist, with a hint when it does not.
fn load_existing(path: &Path) -> anyhow::Result<PasswordFile> {
    match PasswordFile::load(path) {
        Err(PasswordFileError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            bail!(
                "password file {} does not exist; use -c to create it",
                path.display()
            )
        }
        other => Ok(other?),
    }
}

/// On a terminal: prompts twice without echo. Otherwise: the first line of stdin.
fn read_password() -> anyhow::Result<Vec<u8>> {
    if io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .context("cannot read the password from the terminal")?;
        let second = rpassword::prompt_password("Reenter password: ")
            .context("cannot read the password from the terminal")?;
        if first != second {
            bail!("passwords do not match");
        }
        return Ok(first.into_bytes());
    }
    let mut line = String::new();
    let read = io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    if read == 0 {
        bail!("no password on standard input");
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.as_bytes().to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    const FAST: HashParams = HashParams {
        argon2_memory_kib: 8,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        scram_iterations: 2,
    };

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: PasswdArgs,
    }

    fn parse(argv: &[&str]) -> Result<PasswdArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("passwd").chain(argv.iter().copied())).map(|c| c.args)
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir()
                .join(format!("midge-passwd-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self) -> String {
            self.0.join("passwd").display().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run_args(argv: &[&str]) -> anyhow::Result<()> {
        run_with(parse(argv)?, FAST, || Ok(b"prompted".to_vec()))
    }

    #[test]
    fn create_add_change_delete() {
        let dir = TempDir::new("cycle");
        let f = dir.file();
        run_args(&["-c", "-b", &f, "alice", "one"]).unwrap();
        run_args(&["-b", &f, "bob", "two"]).unwrap();
        run_args(&[&f, "carol"]).unwrap();
        run_args(&["-H", "sha512-pbkdf2", "-b", &f, "dave", "four"]).unwrap();
        let file = PasswordFile::load(&f).unwrap();
        assert_eq!(
            file.users().collect::<Vec<_>>(),
            ["alice", "bob", "carol", "dave"]
        );
        assert!(file.verify("alice", b"one"));
        assert!(file.verify("bob", b"two"));
        assert!(file.verify("carol", b"prompted"));
        assert!(file.verify("dave", b"four"));
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("\ndave:$7$101$"), "{text}");
        assert!(text.contains("alice:$scram-sha-256$"), "{text}");

        run_args(&["-b", &f, "alice", "uno"]).unwrap();
        run_args(&["-D", &f, "bob"]).unwrap();
        let file = PasswordFile::load(&f).unwrap();
        assert!(file.verify("alice", b"uno"));
        assert!(!file.contains("bob"));
        assert!(run_args(&["-D", &f, "bob"])
            .unwrap_err()
            .to_string()
            .contains("not found"));

        // -c starts over.
        run_args(&["-c", "-b", &f, "zed", "z"]).unwrap();
        assert_eq!(
            PasswordFile::load(&f).unwrap().users().collect::<Vec<_>>(),
            ["zed"]
        );
    }

    #[test]
    fn update_hashes_plain_lines_in_place() {
        let dir = TempDir::new("update");
        let f = dir.file();
        std::fs::write(&f, "# users\nerin:plain one\nfrank:two\n").unwrap();
        run_args(&["-U", &f]).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("# users\nerin:$argon2id$"), "{text}");
        assert!(!text.contains("plain one"));
        let file = PasswordFile::load(&f).unwrap();
        assert!(file.verify("erin", b"plain one"));
        assert!(file.verify("frank", b"two"));
        // Running it again keeps the hashes.
        run_args(&["-U", &f]).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), text);
    }

    #[test]
    fn usage_errors() {
        let dir = TempDir::new("errors");
        let f = dir.file();
        let missing = run_args(&["-b", &f, "u", "p"]).unwrap_err().to_string();
        assert!(missing.contains("use -c to create it"), "{missing}");
        let no_pw = run_args(&["-c", "-b", &f, "u"]).unwrap_err().to_string();
        assert!(no_pw.contains("-b needs the password"), "{no_pw}");
        let no_b = run_args(&["-c", &f, "u", "p"]).unwrap_err().to_string();
        assert!(no_b.contains("needs -b"), "{no_b}");
        let bad_user = run_args(&["-c", "-b", &f, "a:b", "p"])
            .unwrap_err()
            .to_string();
        assert!(bad_user.contains("':'"), "{bad_user}");
        assert!(run_args(&["-U", &f, "u"]).is_err());
        assert!(run_args(&["-c", &f]).is_err());
        // Nothing was created by the failures.
        assert!(!Path::new(&f).exists());

        for conflicting in [
            &["-c", "-D", "f", "u"][..],
            &["-b", "-D", "f", "u"],
            &["-c", "-U", "f"],
            &["-D", "-U", "f"],
            &["-H", "sha512-pbkdf2", "-U", "f"],
            &["-H", "md5", "f", "u"],
        ] {
            assert!(parse(conflicting).is_err(), "{conflicting:?}");
        }
    }
}
