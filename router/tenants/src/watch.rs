//! The tenants file as a source of the [`Directory`]: read at start, then re-read when it changes.
//!
//! The file is polled (its content, not its modification time): a Kubernetes Secret mounted as a
//! volume changes by swapping a symlink, which file-change notifications on the file itself miss,
//! and a poll of one small file a second costs nothing. A new content counts once two polls in a
//! row read it (see [`FileSource::poll`]). A file that does not parse or check keeps the previous
//! tenants in force; the error is reported (logged and counted by the caller) once per distinct bad
//! content.

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
    /// The digest of the content in force (or refused last).
    applied: Option<[u8; 32]>,
    /// The digest of a new content read once, applied if the next poll reads it again.
    seen: Option<[u8; 32]>,
}

impl FileSource {
    /// Reads the file once and puts it in force; an error here is the caller's to report (the edge
    /// refuses to start).
    pub fn load(path: PathBuf, directory: Directory) -> Result<(FileSource, usize), LoadError> {
        let mut source = FileSource {
            path,
            directory,
            applied: None,
            seen: None,
        };
        let (digest, content) = source.read();
        source.applied = Some(digest);
        match source.apply(content) {
            Reload::Loaded(count) => Ok((source, count)),
            Reload::Refused(error) => Err(error),
        }
    }

    /// Reads the file; returns what changed, or `None` if its content is what is in force, or new
    /// but read for the first time.
    ///
    /// A new content is applied once two polls in a row read it. A writer that truncates the file
    /// and then writes it (an editor, `>` in a shell, `std::fs::write`) can otherwise be caught in
    /// between, and the empty or half-written file read then would replace every tenant (an empty
    /// file is a valid one, with none), closing their connections. A change thus takes one to two
    /// poll intervals.
    pub fn poll(&mut self) -> Option<Reload> {
        let (digest, content) = self.read();
        if self.applied == Some(digest) {
            self.seen = None;
            return None;
        }
        if self.seen != Some(digest) {
            self.seen = Some(digest);
            return None;
        }
        self.seen = None;
        self.applied = Some(digest);
        Some(self.apply(content))
    }

    /// The file's content and its digest (that of the error if it cannot be read, so that the
    /// same error is reported once).
    fn read(&self) -> ([u8; 32], Result<Vec<u8>, FileError>) {
        match std::fs::read(&self.path) {
            Ok(bytes) => (Sha256::digest(&bytes).into(), Ok(bytes)),
            Err(e) => {
                let error = FileError::Read {
                    path: self.path.display().to_string(),
                    error: e.to_string(),
                };
                (Sha256::digest(error.to_string()).into(), Err(error))
            }
        }
    }

    /// Puts `content` in force if it parses, checks and agrees with the other sources.
    fn apply(&self, content: Result<Vec<u8>, FileError>) -> Reload {
        let tenants = content.and_then(|bytes| match std::str::from_utf8(&bytes) {
            Ok(text) => file::parse(text),
            Err(_) => Err(FileError::Syntax {
                line: 0,
                column: 0,
                message: "the file is not UTF-8".into(),
            }),
        });
        match tenants {
            Ok(tenants) => {
                let count = tenants.len();
                match self.directory.replace(SOURCE, tenants) {
                    Ok(()) => Reload::Loaded(count),
                    Err(conflict) => Reload::Refused(conflict.into()),
                }
            }
            Err(error) => Reload::Refused(error.into()),
        }
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

    /// A file under `temp_dir` holding `content`, and a source of it in force.
    fn source_of(name: &str, content: &str) -> (PathBuf, Directory, FileSource) {
        let dir = std::env::temp_dir().join(format!("sb-tenants-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tenants.toml");
        std::fs::write(&path, content).unwrap();
        let directory = Directory::new();
        let (source, _) = FileSource::load(path.clone(), directory.clone()).unwrap();
        (path, directory, source)
    }

    /// Polls twice: a new content is read once, then applied.
    fn settle(source: &mut FileSource) -> Option<Reload> {
        assert_eq!(
            source.poll(),
            None,
            "a content read once is not applied yet"
        );
        source.poll()
    }

    #[test]
    fn a_bad_file_keeps_the_previous_tenants() {
        let (path, directory, mut source) = source_of("bad", GOOD);
        assert!(directory.snapshot().key("a1").is_some());
        assert_eq!(source.poll(), None, "unchanged content is no change");

        std::fs::write(&path, "[tenants.a]\nkeys = 3\n").unwrap();
        let Some(Reload::Refused(LoadError::File(error))) = settle(&mut source) else {
            panic!("a bad file must be refused");
        };
        assert!(error.to_string().starts_with("line 2"), "{error}");
        assert_eq!(source.poll(), None, "the same bad content is reported once");
        assert!(
            directory.snapshot().key("a1").is_some(),
            "the previous tenants stay"
        );

        std::fs::write(&path, GOOD.replace("a1", "a2")).unwrap();
        assert_eq!(settle(&mut source), Some(Reload::Loaded(1)));
        let snapshot = directory.snapshot();
        assert!(snapshot.key("a1").is_none() && snapshot.key("a2").is_some());

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            settle(&mut source),
            Some(Reload::Refused(LoadError::File(FileError::Read { .. })))
        ));
        assert!(directory.snapshot().key("a2").is_some());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A writer that truncates the file and then writes it, caught in between by one poll: the
    /// empty file (valid, with no tenants) never replaces the tenants, and the content written
    /// applies once read twice.
    #[test]
    fn a_file_caught_half_written_changes_nothing() {
        let (path, directory, mut source) = source_of("half", GOOD);
        std::fs::write(&path, "").unwrap();
        assert_eq!(source.poll(), None);
        std::fs::write(&path, GOOD.replace("a1", "a2")).unwrap();
        assert_eq!(source.poll(), None);
        assert!(
            directory.snapshot().key("a1").is_some(),
            "the tenants in force stay while the file changes"
        );
        assert_eq!(source.poll(), Some(Reload::Loaded(1)));
        assert!(directory.snapshot().key("a2").is_some());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
