//! Reading the files users name (`--cacert`, `--cert`, `--key`, `--client-ca`,
//! `--client-ca-optional`, the CA directory of `stls cert --ca`): one reader for all of them.
//!
//! Every such file is small PEM text, so it is read with a cap, and only from what can hold
//! such text: a regular file, or a pipe (`--cacert <(…)`), read up to the cap. A device such
//! as `/dev/zero` would otherwise be read until memory runs out.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{anyhow, Result};

use crate::error::io_phrase;

/// The most a file option may hold: 1 MiB, several times the whole Mozilla root bundle.
pub(crate) const MAX_SIZE: u64 = 1024 * 1024;

/// The cap as people write it, for messages and docs.
pub(crate) const MAX_SIZE_TEXT: &str = "1 MiB";

/// Read a whole file or pipe of at most [`MAX_SIZE`] bytes, naming it in every error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    let name = path.display();
    let fail = |e: std::io::Error| anyhow!("{name}: {}", io_phrase(&e));
    // Opening a named pipe waits for its writer, as `cat` would; opening a device does not
    // read from it, so nothing is consumed before the type is known.
    let file = File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(anyhow!("{name}: is a directory, not a file"));
    }
    if !(kind.is_file() || kind.is_fifo()) {
        let what = if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(anyhow!("{name}: not a regular file or pipe (it is {what})"));
    }
    let too_big = || anyhow!("{name}: larger than {MAX_SIZE_TEXT}, the most a PEM file may hold");
    if kind.is_file() && meta.len() > MAX_SIZE {
        return Err(too_big());
    }
    // A pipe has no size, and a regular file may grow while it is read: the cap holds anyway.
    let mut data = Vec::new();
    file.take(MAX_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(fail)?;
    if data.len() as u64 > MAX_SIZE {
        return Err(too_big());
    }
    Ok(data)
}

/// Read stdin (`--targets -`) up to [`MAX_SIZE`].
pub(crate) fn read_stdin() -> Result<Vec<u8>> {
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow!("reading stdin: {}", io_phrase(&e)))?;
    if data.len() as u64 > MAX_SIZE {
        return Err(anyhow!(
            "stdin: larger than {MAX_SIZE_TEXT}, the most a list may hold"
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused() {
        let err = read_file(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(
            err,
            "/dev/zero: not a regular file or pipe (it is a character device)"
        );
        let err = read_file(Path::new("/")).unwrap_err().to_string();
        assert_eq!(err, "/: is a directory, not a file");
    }
}
