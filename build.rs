//! Records the git commit the binary is built from as `MOVIEREC_COMMIT`, so that every
//! checkpoint names the code that trained it. A build without `.git` (an image) may set
//! `MOVIEREC_COMMIT` itself; without either, checkpoints record no commit.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MOVIEREC_COMMIT");
    if std::env::var_os("MOVIEREC_COMMIT").is_some() {
        return;
    }
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=MOVIEREC_COMMIT={commit}");
    // A new commit moves HEAD or the branch it points at (a worktree keeps HEAD in its own git
    // directory and the branches in the common one; a directory is watched file by file). Only files that exist are watched: a
    // missing one would rerun this script on every build.
    let watch = |path: String| {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    };
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch(format!("{dir}/HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        watch(format!("{common}/refs/heads"));
        watch(format!("{common}/packed-refs"));
    }
}
