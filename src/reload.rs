//! Reading a long-running stls's files again, for the connections that follow: on SIGHUP,
//! or when `--reload-every` sees one of them change. A file has changed when its path after
//! symlinks, its inode, size or modification time has: the swap of a Kubernetes Secret's
//! `..data` symlink changes the first, a file rewritten in place the others.
//!
//! Each reload, good or bad, is one line on stderr; a bad file keeps what was loaded before.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::metrics;
use crate::report::{self, Event};
use crate::systemd;

/// Build the configuration from the files as they are now and put it in place for new
/// connections; what is served (or trusted) now.
pub(crate) type Load = dyn Fn() -> Result<String>;

/// What a loop that answers SIGHUP reloads, and when it looks at its files.
pub(crate) struct Reload {
    /// None: nothing to reload (an ephemeral certificate).
    load: Option<Box<Load>>,
    files: Vec<PathBuf>,
    /// `--reload-every`, and when to look next.
    every: Option<(Duration, Instant)>,
    seen: Vec<State>,
}

/// What a file was when last looked at: where its path leads, and that file's identity,
/// size and modification time; `None` if it could not be looked at.
type State = Option<(PathBuf, u64, u64, u64, i64, i64)>;

fn state(path: &PathBuf) -> State {
    let real = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&real).ok()?;
    Some((
        real,
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    ))
}

impl Reload {
    pub(crate) fn new(
        load: Option<Box<Load>>,
        files: Vec<PathBuf>,
        every: Option<Duration>,
    ) -> Reload {
        let seen = files.iter().map(state).collect();
        Reload {
            load,
            files,
            every: every.map(|d| (d, Instant::now() + d)),
            seen,
        }
    }

    /// When to look at the files next (`--reload-every`).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.every.map(|(_, at)| at)
    }

    /// `--reload-every`: when it is time, look at the files, and reload if one changed.
    pub(crate) fn tick(&mut self, now: Instant) {
        let Some((every, at)) = self.every else {
            return;
        };
        if now < at {
            return;
        }
        self.every = Some((every, now + every));
        let now_seen: Vec<State> = self.files.iter().map(state).collect();
        let changed = self
            .files
            .iter()
            .zip(self.seen.iter().zip(&now_seen))
            .find(|(_, (was, is))| was != is)
            .map(|(path, _)| path.display().to_string());
        if let Some(path) = changed {
            self.apply(&format!("{path} changed"));
        }
    }

    /// SIGHUP: reload now.
    pub(crate) fn signalled(&mut self) {
        if self.load.is_none() {
            report::note(
                Event::Reloaded,
                "SIGHUP: nothing to reload (the certificate is ephemeral); going on",
            );
            return;
        }
        self.apply("SIGHUP");
    }

    /// Reload, saying why (`trigger`) and how it went.
    fn apply(&mut self, trigger: &str) {
        let Some(load) = &self.load else {
            return;
        };
        // Looked at before the reading: a change made meanwhile is seen next time.
        self.seen = self.files.iter().map(state).collect();
        systemd::reloading();
        let result = load();
        systemd::ready();
        metrics::reloaded(result.is_ok());
        match result {
            Ok(what) => report::note(Event::Reloaded, format_args!("{trigger}: reloaded; {what}")),
            Err(e) => report::note_warn(
                Event::Reloaded,
                format_args!("{trigger}: {e:#}; the certificates loaded before are kept"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swapped_symlink_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("..a"), dir.path().join("..b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        // The same size, the same contents: only where the path leads differs.
        std::fs::write(a.join("cert.pem"), "same").unwrap();
        std::fs::write(b.join("cert.pem"), "same").unwrap();
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink("..a", &data).unwrap();
        let cert = dir.path().join("cert.pem");
        std::os::unix::fs::symlink("..data/cert.pem", &cert).unwrap();
        let before = state(&cert);
        assert!(before.is_some());
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("..b", &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        assert_ne!(state(&cert), before);
        // A file that is gone is a change too, and no panic.
        std::fs::remove_dir_all(&b).unwrap();
        assert_eq!(state(&cert), None);
    }
}
