//! `midge check-config`: validates a configuration file exactly as `midge serve` would (the
//! same code path, [`crate::serve::load_config`]) and prints the equivalent midge TOML on
//! stdout, so a mosquitto.conf can be checked and converted before switching brokers.
//!
//! Contract: exit code 0 and the TOML on stdout (warnings on stderr) when the file is valid;
//! exit code 1 and a message naming the file, the key or line, and the fix when it is not.
//! The printed TOML loads with `midge serve -c` to the same configuration.
//!
//! Beyond the file itself it opens what `midge serve` opens at start: every listener's
//! certificate, key, CA, password and ACL files, `http.password_file`, and the log level
//! list. Only binding the sockets and opening the data directory are left to `midge serve`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use midge_auth::acl::AclFile;
use midge_auth::password::PasswordFile;
use midge_server::listener::ListenerRuntime;
use midge_server::{FileConfig, ServerConfig};

use crate::serve::{load_config, ServeArgs};

/// Options of `midge check-config`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("file")
        .required(true)
        .args(["config", "mosquitto_conf"])
))]
pub struct CheckConfigArgs {
    /// midge TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// mosquitto.conf to check and translate.
    #[arg(long, value_name = "FILE")]
    pub mosquitto_conf: Option<PathBuf>,
}

/// Checks the file, prints the TOML (stdout) and warnings (stderr); exits with 1 when the
/// file is invalid.
pub fn run(args: CheckConfigArgs) -> anyhow::Result<()> {
    let path = args
        .config
        .as_deref()
        .or(args.mosquitto_conf.as_deref())
        .map_or_else(String::new, |p| p.display().to_string());
    match check(&args) {
        Ok((toml, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            print!("{toml}");
            eprintln!(
                "{path}: valid ({} warning{})",
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{path}: invalid: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The TOML of the configuration and the warnings, or why `midge serve` would refuse it.
fn check(args: &CheckConfigArgs) -> anyhow::Result<(String, Vec<String>)> {
    let serve = ServeArgs {
        config: args.config.clone(),
        mosquitto_conf: args.mosquitto_conf.clone(),
        ..Default::default()
    };
    // Validation is `midge serve`'s own; the file is read again only to print it.
    let (config, mut warnings) = load_config(&serve)?;
    check_files(&config, &mut warnings)?;
    let (file, source): (FileConfig, &Path) = match (&args.config, &args.mosquitto_conf) {
        (Some(path), _) => (FileConfig::load(path)?, path),
        (None, Some(path)) => (crate::mosquitto_conf::load(path)?.0, path),
        (None, None) => anyhow::bail!("give --config FILE or --mosquitto-conf FILE"),
    };
    let body = toml::to_string_pretty(&file).context("cannot write the configuration as TOML")?;
    let toml = format!(
        "# midge configuration, equivalent to {} (midge check-config).\n\n{body}",
        source.display()
    );
    Ok((toml, warnings))
}

/// Loads what `midge serve` loads at start besides the configuration file, and adds the ACL
/// files' warnings to `warnings`.
fn check_files(config: &ServerConfig, warnings: &mut Vec<String>) -> anyhow::Result<()> {
    for l in &config.listeners {
        let name: Arc<str> = format!("{}://{}", l.kind.scheme(), l.addr).into();
        ListenerRuntime::load(l.clone(), name, &config.auth, None)?;
        if let Some(path) = &l.acl_file {
            let acl = AclFile::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            warnings.extend(
                acl.warnings()
                    .iter()
                    .map(|w| format!("{}: {w}", path.display())),
            );
        }
    }
    if let Some(path) = config.http.as_ref().and_then(|h| h.password_file.as_ref()) {
        PasswordFile::load(path).map_err(|e| anyhow::anyhow!("http.password_file: {e}"))?;
    }
    crate::serve::log_filter(&config.log.level)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_mosquitto_conf_becomes_toml_that_loads_to_the_same_config() {
        let dir = std::env::temp_dir().join(format!("midge-check-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            "listener 1883\nallow_anonymous true\nlog_dest syslog\n",
        )
        .unwrap();
        let args = CheckConfigArgs {
            config: None,
            mosquitto_conf: Some(conf.clone()),
        };
        let result = check(&args);
        let direct = crate::mosquitto_conf::load(&conf);
        let bad = dir.join("bad.conf");
        std::fs::write(&bad, "max_qos 3\n").unwrap();
        let refused = check(&CheckConfigArgs {
            config: None,
            mosquitto_conf: Some(bad),
        });
        let _ = std::fs::remove_dir_all(&dir);

        let (toml, warnings) = result.unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let parsed = FileConfig::parse(&toml, Path::new("printed")).unwrap();
        assert_eq!(parsed, direct.unwrap().0);
        let e = format!("{:#}", refused.unwrap_err());
        assert!(e.contains("bad.conf:1") && e.contains("max_qos"), "{e}");
    }
}
