//! What the CLI's test files share: the real binary, run as a user runs it.

pub mod mixed;

use std::path::Path;
use std::process::Command;

/// Runs `quarry ARGS` in `dir` with the tests' model and no config file: exit code, stdout, stderr.
pub fn quarry(args: &[&str], dir: &Path) -> (i32, String, String) {
    quarry_with(args, dir, &[])
}

/// [`quarry`] with more environment: AWS resources and credentials, for one.
pub fn quarry_with(args: &[&str], dir: &Path, env: &[(&str, String)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env_remove("QUARRY_CONFIG")
        .output()
        .expect("quarry runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh, empty folder of this process's for a test: `quarry-<area>-<name>-<pid>` in the
/// temporary directory.
pub fn scratch(area: &str, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("quarry-{area}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// `key`'s SHA-256 in lowercase hex, as a keys file stores it.
pub fn sha256(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
