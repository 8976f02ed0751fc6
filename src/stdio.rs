//! stdin and stdout as endpoints of the event loop.
//!
//! Each is served by a thread doing plain blocking I/O on a duplicate of the descriptor, so
//! stdin and stdout may be pipes, ttys, regular files or /dev/null (which epoll refuses), and
//! their O_NONBLOCK flags, shared with the shell, are never touched. The threads talk to the
//! loop through channels and wake it with a `mio::Waker`.
//!
//! Memory is bounded by a fixed number of fixed-size buffers per direction: a buffer goes to
//! the other side full and comes back empty, and when none is free the side that wants one
//! waits. That is the backpressure: a slow stdout stops the loop from reading the socket, a
//! slow socket stops the stdin thread from reading.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::Waker;

/// Size of each buffer: large reads and writes, few syscalls.
pub const CHUNK: usize = 128 * 1024;
/// stdout buffers: one being filled by the loop, one being written, one queued.
const BUFFERS: usize = 3;

/// A chunk of bytes: a buffer and how much of it is filled.
pub struct Chunk {
    pub buf: Vec<u8>,
    pub len: usize,
}

impl Chunk {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What the input thread hands over.
pub enum Input {
    Data(Chunk),
    Eof,
    Failed(io::Error),
}

/// Bytes arriving from a file descriptor (stdin) read on a thread.
pub struct Source {
    rx: Receiver<Input>,
    pool: Sender<Vec<u8>>,
}

impl Source {
    /// Read stdin (with `crlf`, each LF becomes CR LF); a closed stdin reads as empty.
    pub fn stdin(waker: Arc<Waker>, crlf: bool) -> io::Result<Source> {
        match io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => Source::spawn(fd, waker, crlf),
            Err(_) => {
                let (tx, rx) = mpsc::channel();
                let (pool, _) = mpsc::channel();
                let _ = tx.send(Input::Eof);
                Ok(Source { rx, pool })
            }
        }
    }

    pub fn spawn(fd: OwnedFd, waker: Arc<Waker>, crlf: bool) -> io::Result<Source> {
        // At most four stdin buffers exist: one being read, one queued here, and HELD in the
        // loop. The queue cannot be a rendezvous (0): the loop is woken after the send.
        let (tx, rx) = mpsc::sync_channel(1);
        let (pool, pool_rx) = mpsc::channel::<Vec<u8>>();
        let mut file = File::from(fd);
        // With crlf, half a buffer is read so that the CRs always fit.
        let want = if crlf { CHUNK / 2 } else { CHUNK };
        let mut after_cr = false;
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || loop {
                let mut buf = pool_rx.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
                let msg = match file.read(&mut buf[..want]) {
                    Ok(0) => Input::Eof,
                    Ok(len) if crlf => {
                        let len = lf_to_crlf(&mut buf, len, &mut after_cr);
                        Input::Data(Chunk { buf, len })
                    }
                    Ok(len) => Input::Data(Chunk { buf, len }),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Input::Failed(e),
                };
                let last = !matches!(msg, Input::Data(_));
                if tx.send(msg).is_err() {
                    return; // the loop has finished
                }
                let _ = waker.wake();
                if last {
                    return;
                }
            })?;
        Ok(Source { rx, pool })
    }

    /// The next input, if any is ready.
    pub fn try_next(&mut self) -> Option<Input> {
        match self.rx.try_recv() {
            Ok(input) => Some(input),
            Err(TryRecvError::Empty) => None,
            // The thread ends only after sending Eof or Failed, so this is after the end.
            Err(TryRecvError::Disconnected) => Some(Input::Eof),
        }
    }

    /// Give a consumed buffer back to the reader.
    pub fn recycle(&self, chunk: Chunk) {
        let _ = self.pool.send(chunk.buf);
    }
}

/// Turn each LF of `buf[..len]` that does not follow a CR into CR LF, in place; `buf` must
/// have room for twice `len`. `after_cr` carries whether the previous chunk ended in CR.
/// Returns the new length.
pub fn lf_to_crlf(buf: &mut [u8], len: usize, after_cr: &mut bool) -> usize {
    let mut prev = *after_cr;
    let mut bare = 0;
    for &b in &buf[..len] {
        bare += usize::from(b == b'\n' && !prev);
        prev = b == b'\r';
    }
    let new_len = len + bare;
    // From the end, so that nothing is overwritten before it is moved.
    let mut to = new_len;
    for from in (0..len).rev() {
        let b = buf[from];
        to -= 1;
        buf[to] = b;
        let before = if from == 0 {
            *after_cr
        } else {
            buf[from - 1] == b'\r'
        };
        if b == b'\n' && !before {
            to -= 1;
            buf[to] = b'\r';
        }
    }
    if len > 0 {
        *after_cr = buf[new_len - 1] == b'\r';
    }
    new_len
}

/// How many stdin chunks the loop holds at once (more wait in the reader's channel).
const HELD: usize = 2;

/// stdin shared by every connection. Each chunk read goes to every connection that was
/// established when it was read, so with several clients stdin is a broadcast; a chunk goes
/// back to the reader once every one of them has sent it. Connections name chunks by sequence
/// number, so none holds a buffer of its own.
pub struct Broadcast {
    source: Source,
    chunks: VecDeque<Chunk>,
    /// The sequence number of `chunks[0]`.
    first: u64,
    /// The sequence number at which stdin ended, once it has.
    end: Option<u64>,
    error: Option<io::Error>,
}

/// What a connection finds at its position in stdin.
pub enum Next<'a> {
    Data(&'a [u8]),
    /// Not read yet.
    Wait,
    /// stdin has ended (see [`Broadcast::error`] for how).
    End,
}

impl Broadcast {
    pub fn new(source: Source) -> Broadcast {
        Broadcast {
            source,
            chunks: VecDeque::new(),
            first: 0,
            end: None,
            error: None,
        }
    }

    /// Where a connection that joins now starts: at the next chunk to be read.
    pub fn position(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }

    /// The bytes at chunk `seq`, from `offset` on.
    pub fn at(&self, seq: u64, offset: usize) -> Next<'_> {
        let index = seq.saturating_sub(self.first) as usize;
        match self.chunks.get(index) {
            Some(chunk) => Next::Data(&chunk.bytes()[offset.min(chunk.len)..]),
            None if self.end == Some(seq) => Next::End,
            None => Next::Wait,
        }
    }

    /// Take what the reader has ready, while there is room; true if anything new arrived.
    pub fn pull(&mut self) -> bool {
        let mut got = false;
        while self.end.is_none() && self.chunks.len() < HELD {
            match self.source.try_next() {
                None => break,
                Some(Input::Data(chunk)) => self.chunks.push_back(chunk),
                Some(Input::Eof) => self.end = Some(self.position()),
                Some(Input::Failed(e)) => {
                    self.end = Some(self.position());
                    self.error = Some(e);
                }
            }
            got = true;
        }
        got
    }

    /// Every connection has sent the chunks before `seq`: give them back to the reader.
    pub fn release(&mut self, seq: u64) {
        while self.first < seq {
            let Some(chunk) = self.chunks.pop_front() else {
                break;
            };
            self.source.recycle(chunk);
            self.first += 1;
        }
    }

    /// Why stdin ended, if reading it failed.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }
}

/// Bytes leaving through a file descriptor (stdout) written on a thread.
pub struct Sink {
    tx: Option<Sender<Chunk>>,
    pool: Receiver<Vec<u8>>,
    spare: Option<Vec<u8>>,
    made: usize,
    /// How many chunks were queued, and how many of them the writer has written.
    queued: u64,
    written: Arc<AtomicU64>,
    /// The writer failed (the error was taken).
    stopped: bool,
    failure: Arc<Mutex<Option<io::Error>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    pub fn stdout(waker: Arc<Waker>) -> io::Result<Sink> {
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        Sink::spawn(fd, waker)
    }

    pub fn spawn(fd: OwnedFd, waker: Arc<Waker>) -> io::Result<Sink> {
        let (tx, rx) = mpsc::channel::<Chunk>();
        let (pool_tx, pool) = mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        let failed = failure.clone();
        let written = Arc::new(AtomicU64::new(0));
        let count = written.clone();
        let mut file = File::from(fd);
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                for chunk in rx {
                    if let Err(e) = file.write_all(chunk.bytes()) {
                        if let Ok(mut slot) = failed.lock() {
                            *slot = Some(e);
                        }
                        let _ = waker.wake();
                        return;
                    }
                    count.fetch_add(1, Ordering::Release);
                    let _ = pool_tx.send(chunk.buf);
                    let _ = waker.wake();
                }
            })?;
        Ok(Sink {
            tx: Some(tx),
            pool,
            spare: None,
            made: 0,
            queued: 0,
            written,
            stopped: false,
            failure,
            thread: Some(thread),
        })
    }

    /// An empty buffer to fill, or `None` while all of them are in flight.
    pub fn buffer(&mut self) -> Option<Chunk> {
        if let Some(buf) = self.spare.take().or_else(|| self.pool.try_recv().ok()) {
            return Some(Chunk { buf, len: 0 });
        }
        if self.made < BUFFERS {
            self.made += 1;
            return Some(Chunk {
                buf: vec![0; CHUNK],
                len: 0,
            });
        }
        None
    }

    /// Queue a chunk for writing (an empty one just goes back to the pool). Returns the
    /// number the chunk's bytes are written by, for [`Sink::written`].
    pub fn send(&mut self, chunk: Chunk) -> u64 {
        if chunk.len == 0 {
            self.spare = Some(chunk.buf);
            return self.queued;
        }
        if let Some(tx) = &self.tx {
            if tx.send(chunk).is_ok() {
                self.queued += 1;
            }
        }
        self.queued
    }

    /// Whether every chunk up to number `upto` (as returned by [`Sink::send`]) is written.
    pub fn written(&self, upto: u64) -> bool {
        self.written.load(Ordering::Acquire) >= upto
    }

    /// Whether nothing is left to wait for: everything queued is written, or the writer
    /// has stopped (it failed).
    pub fn settled(&self) -> bool {
        self.stopped
            || self.written(self.queued)
            || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The error that stopped the writer, if it failed.
    pub fn take_failure(&mut self) -> Option<io::Error> {
        let e = self.failure.lock().ok().and_then(|mut slot| slot.take());
        self.stopped |= e.is_some();
        e
    }

    /// Wait until everything queued is written; the error that stopped the writer, if any.
    pub fn finish(mut self) -> io::Result<()> {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        match self.failure.lock().ok().and_then(|mut slot| slot.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lf_to_crlf;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut after_cr = false;
        let mut out = Vec::new();
        for chunk in chunks {
            let mut buf = vec![0; chunk.len() * 2];
            buf[..chunk.len()].copy_from_slice(chunk);
            let n = lf_to_crlf(&mut buf, chunk.len(), &mut after_cr);
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn bare_line_feeds_become_crlf_and_crlf_stays() {
        assert_eq!(run(&[b"a\nb\r\nc\n\n"]), b"a\r\nb\r\nc\r\n\r\n");
        assert_eq!(run(&[b"\n"]), b"\r\n");
        assert_eq!(run(&[b""]), b"");
        assert_eq!(run(&[b"\r\r\n\r"]), b"\r\r\n\r");
    }

    #[test]
    fn a_crlf_split_across_reads_is_not_doubled() {
        assert_eq!(run(&[b"a\r", b"\nb\n"]), b"a\r\nb\r\n");
        assert_eq!(run(&[b"a", b"\n"]), b"a\r\n");
        assert_eq!(run(&[b"\r", b"", b"\n"]), b"\r\n");
    }
}
