//! Temporary directories for one test's processes, removed on drop unless [`KEEP_DIRS_ENV`] is set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::KEEP_DIRS_ENV;

/// A fresh directory under the system's temporary directory.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/switchboard-<what>-<pid>-<n>-<nanos>`. The process id and a counter keep
    /// parallel tests apart; the clock keeps apart runs that reuse a process id.
    pub fn new(what: &str) -> Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "switchboard-{what}-{}-{n}-{nanos}",
            std::process::id()
        ));
        // create_dir, not create_dir_all: a leftover directory of the same name is an error, not
        // something to share.
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create the test directory {}", path.display()))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DIRS_ENV).is_some() {
            eprintln!("testkit: keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
