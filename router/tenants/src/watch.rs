//! The tenants file as a source of the [`Directory`]: read at start, then re-read when it changes.
//!
//! The file is polled (its content, not its modification time): a Kubernetes Secret mounted as a
//! volume changes by swapping a symlink, which file-change notifications on the file itself miss,
//! and a poll of one small file a second costs nothing. A file that does not parse or check keeps
//! the previous tenants in force; the error is reported (logged and counted by the caller) once per
//! distinct bad content.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::Directory;
use crate::file::{self, FileError};

/// The directory source name of the tenants file.
pub const SOURCE: &str = "tenants file";

/// Why a (re)load did not change the tenants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file is wrong.
    #[error(transparent)]
    File(#[from] FileError),
    /// It conflicts with another source.
    #[error(transparent)]
    Conflict(#[from] crate::directory::ConflictError),
}

/// What happened at one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The new content is in force, with this many tenants.
    Loaded(usize),
    /// The new content was refused; the previous tenants stay.
    Refused(LoadError),
}

/// The tenants file at `path`, feeding `directory`.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    directory: Directory,
    last: Option<[u8; 32]>,
}

impl FileSource {
    /// Reads the file once; an error here is the caller's to report (the edge refuses to start).
    pub fn load(path: PathBuf, directory: Directory) -> Result<(FileSource, usize), LoadError> {
        let mut source = FileSource {
            path,
            directory,
            last: None,
        };
        match source.poll() {
            Some(Reload::Loaded(count)) => Ok((source, count)),
            Some(Reload::Refused(error)) => Err(error),
            // Cannot happen: nothing was read before.
            None => Ok((source, 0)),
        }
    }

    /// Reads the file; returns what changed, or `None` if its content is what was seen last.
    pub fn poll(&mut self) -> Option<Reload> {
        let text = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                let error = FileError::Read {
                    path: self.path.display().to_string(),
                    error: e.to_string(),
                };
                let changed = self.changed(Sha256::digest(error.to_string()).into());
                return changed.then(|| Reload::Refused(error.into()));
            }
        };
        if !self.changed(Sha256::digest(&text).into()) {
            return None;
        }
        let tenants = match std::str::from_utf8(&text) {
            Ok(text) => file::parse(text),
            Err(_) => Err(FileError::Syntax {
                line: 0,
                column: 0,
                message: "the file is not UTF-8".into(),
            }),
        };
        Some(match tenants {
            Ok(tenants) => {
                let count = tenants.len();
                match self.directory.replace(SOURCE, tenants) {
                    Ok(()) => Reload::Loaded(count),
                    Err(conflict) => Reload::Refused(conflict.into()),
                }
            }
            Err(error) => Reload::Refused(error.into()),
        })
    }

    /// Whether `digest` differs from the last content seen; remembers it.
    fn changed(&mut self, digest: [u8; 32]) -> bool {
        let changed = self.last != Some(digest);
        self.last = Some(digest);
        changed
    }

    /// Polls every `interval` until `stop`, handing each change to `report`.
    pub async fn follow(
        mut self,
        interval: Duration,
        stop: CancellationToken,
        report: impl Fn(&Reload),
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {
                    if let Some(reload) = self.poll() {
                        report(&reload);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "[tenants.a]\nkeys = [{ id = \"a1\", secret = \"0123456789abcdef0123456789abcdef\" }]\n";

    #[test]
    fn a_bad_file_keeps_the_previous_tenants() {
        let dir = std::env::temp_dir().join(format!("sb-tenants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tenants.toml");
        std::fs::write(&path, GOOD).unwrap();
        let directory = Directory::new();
        let (mut source, count) = FileSource::load(path.clone(), directory.clone()).unwrap();
        assert_eq!(count, 1);
        assert_eq!(source.poll(), None, "unchanged content is no change");

        std::fs::write(&path, "[tenants.a]\nkeys = 3\n").unwrap();
        let Some(Reload::Refused(LoadError::File(error))) = source.poll() else {
            panic!("a bad file must be refused");
        };
        assert!(error.to_string().starts_with("line 2"), "{error}");
        assert_eq!(source.poll(), None, "the same bad content is reported once");
        assert!(
            directory.snapshot().key("a1").is_some(),
            "the previous tenants stay"
        );

        std::fs::write(&path, GOOD.replace("a1", "a2")).unwrap();
        assert_eq!(source.poll(), Some(Reload::Loaded(1)));
        let snapshot = directory.snapshot();
        assert!(snapshot.key("a1").is_none() && snapshot.key("a2").is_some());

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            source.poll(),
            Some(Reload::Refused(LoadError::File(FileError::Read { .. })))
        ));
        assert!(directory.snapshot().key("a2").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
