//! The data fetch path without network: datasets/fetch.sh through a mirror folder (its own script,
//! on tiny files), and `protein-lm data fetch --verify-only` failing on a missing data set.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn fetch_sh_through_a_mirror_offline() {
    let out = Command::new("bash").arg(repo().join("datasets/test_fetch_mirror.sh")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "datasets/test_fetch_mirror.sh failed:\n{text}");
    assert!(text.contains("test_fetch_mirror: ok"), "{text}");
}

/// The full Swiss-Prot table is built by the fetch, never shipped in ../shared/datasets, so with an
/// empty $PROTEIN_LM_DATA and user data directory it is missing and --verify-only must say so and
/// fail. (Where someone did put the full table beside the checkout, the command must pass instead.)
#[test]
fn verify_only_fails_on_a_missing_data_set() {
    let empty = tempfile::tempdir().unwrap();
    let full = "swissprot-2014-go/swissprot_201401_go_full.tsv.gz";
    let beside = repo().join("../shared/datasets").join(full);
    let out = Command::new(env!("CARGO_BIN_EXE_protein-lm"))
        .args(["data", "fetch", "--verify-only", "swissprot-2014-go"])
        .env("PROTEIN_LM_DATA", empty.path())
        .env("XDG_DATA_HOME", empty.path())
        .env("HOME", empty.path())
        .current_dir(empty.path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if beside.is_file() {
        assert!(out.status.success(), "{text}");
        return;
    }
    assert!(!out.status.success(), "--verify-only exited 0 with {full} missing:\n{text}");
    assert!(text.contains(&format!("missing  {full}")), "{text}");
    assert!(text.contains("protein-lm data fetch swissprot-2014-go"), "{text}");
}
