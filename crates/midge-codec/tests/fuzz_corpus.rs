//! Replays the fuzzing corpus (`fuzz/corpus/decode`) and every saved crash
//! (`fuzz/regressions/decode`) through the same checks the `decode` fuzz target runs
//! (`fuzz/src/check.rs`, included verbatim), so `cargo test` keeps every input the fuzzer
//! ever found interesting, or ever crashed on, passing without a fuzzer or a nightly compiler.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

mod check {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/src/check.rs"
    ));
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The regular files of `dir`, sorted, dot files (such as `.gitkeep`) left out.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn replay(files: &[PathBuf]) {
    for path in files {
        let data = std::fs::read(path).unwrap();
        let result = std::panic::catch_unwind(|| check::check_input(&data));
        if result.is_err() {
            panic!("fuzz input {} fails the decode checks", path.display());
        }
    }
}

#[test]
fn seed_corpus_passes_the_fuzz_checks() {
    let files = inputs(&fuzz_dir().join("corpus/decode"));
    assert!(
        !files.is_empty(),
        "fuzz/corpus/decode is empty: regenerate it with `cargo run --example gen_corpus` in fuzz/"
    );
    replay(&files);
}

#[test]
fn saved_crashes_stay_fixed() {
    // Empty is fine: it holds only inputs that once crashed the target.
    replay(&inputs(&fuzz_dir().join("regressions/decode")));
}

/// The corpus is a useful seed only if it holds valid packets: most of its files must decode
/// to at least one packet under one of the versions.
#[test]
fn seed_corpus_holds_valid_packets() {
    use bytes::BytesMut;
    use midge_codec::{decode, DecodeLimits};
    let files = inputs(&fuzz_dir().join("corpus/decode"));
    let valid = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            check::VERSIONS.iter().any(|&v| {
                let mut buf = BytesMut::from(&data[..]);
                matches!(decode(&mut buf, v, &DecodeLimits::default()), Ok(Some(_)))
            })
        })
        .count();
    assert!(
        valid * 2 >= files.len(),
        "only {valid} of {} corpus files decode",
        files.len()
    );
}
