//! Records the git commit the load generator is built from, so that its reports say exactly what
//! produced them (`commit`). Outside a git checkout (or without git) reports carry the version only.

use std::path::Path;
use std::process::Command;

/// `git ARGS` run in this crate's directory: its trimmed output, if it succeeded with some.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    // Build again when HEAD moves: HEAD itself, the branch it points to, and packed refs (worktrees
    // keep HEAD apart from the refs; `--git-path` finds each).
    let refs = [
        Some("HEAD".to_owned()),
        git(&["symbolic-ref", "-q", "HEAD"]),
        Some("packed-refs".to_owned()),
    ];
    for name in refs.into_iter().flatten() {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=SWITCHBOARD_LOADTEST_COMMIT={commit}");
    }
}
