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
pub(crate) const CHUNK: usize = 128 * 1024;
/// stdout buffers: one being filled by the loop, one being written, one queued.
const BUFFERS: usize = 3;

/// A chunk of bytes: a buffer and how much of it is filled.
pub(crate) struct Chunk {
    pub buf: Vec<u8>,
    pub len: usize,
}

impl Chunk {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What the input thread hands over.
pub(crate) enum Input {
    Data(Chunk),
    Eof,
    Failed(io::Error),
}

/// Bytes arriving from a file descriptor (stdin) read on a thread.
///
/// The thread reads only when asked: each read is a request carrying the buffer to fill, so
/// nothing is read (and a terminal is not touched, which would stop a background job) before
/// a connection wants input, and at most [`BUFFERS_IN`] buffers exist. The thread itself
/// starts with the first request.
pub(crate) struct Source {
    rx: Receiver<Input>,
    requests: Sender<Vec<u8>>,
    /// What the thread needs, until the first request starts it.
    unstarted: Option<Reader>,
    /// Reads asked for and not handed over yet.
    outstanding: usize,
    /// Buffers the loop is done with, for the next requests.
    spare: Vec<Vec<u8>>,
}

struct Reader {
    file: File,
    /// `-C`: each LF becomes CR LF.
    crlf: bool,
    waker: Arc<Waker>,
    tx: Sender<Input>,
    requests: Receiver<Vec<u8>>,
}

/// How many stdin buffers exist at most: being read, or held until every connection has
/// sent them.
const BUFFERS_IN: usize = 4;

impl Source {
    /// Read stdin once asked to (with `crlf`, each LF becomes CR LF); a closed stdin reads
    /// as empty.
    pub(crate) fn stdin(waker: Arc<Waker>, crlf: bool) -> Source {
        match io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => Source::new(fd, waker, crlf),
            Err(_) => {
                let (tx, rx) = mpsc::channel();
                let (requests, _) = mpsc::channel();
                let _ = tx.send(Input::Eof);
                Source {
                    rx,
                    requests,
                    unstarted: None,
                    outstanding: 0,
                    spare: Vec::new(),
                }
            }
        }
    }

    pub(crate) fn new(fd: OwnedFd, waker: Arc<Waker>, crlf: bool) -> Source {
        let (tx, rx) = mpsc::channel();
        let (requests, requested) = mpsc::channel::<Vec<u8>>();
        Source {
            rx,
            requests,
            unstarted: Some(Reader {
                file: File::from(fd),
                crlf,
                waker,
                tx,
                requests: requested,
            }),
            outstanding: 0,
            spare: Vec::new(),
        }
    }

    /// Ask for one more read, starting the thread on the first request; false if the reader
    /// has ended (its last word, EOF or an error, is then waiting in the channel).
    fn request(&mut self) -> bool {
        if let Some(reader) = self.unstarted.take() {
            let tx = reader.tx.clone();
            if let Err(e) = Source::start(reader) {
                let _ = tx.send(Input::Failed(e));
                return false;
            }
        }
        let buf = self.spare.pop().unwrap_or_else(|| vec![0; CHUNK]);
        match self.requests.send(buf) {
            Ok(()) => {
                self.outstanding += 1;
                true
            }
            Err(mpsc::SendError(buf)) => {
                self.spare.push(buf);
                false
            }
        }
    }

    fn start(reader: Reader) -> io::Result<()> {
        let Reader {
            mut file,
            crlf,
            waker,
            tx,
            requests,
        } = reader;
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                // With crlf, half a buffer is read (into `raw`) so that the CRs always fit.
                let mut raw = if crlf { vec![0; CHUNK / 2] } else { Vec::new() };
                let mut after_cr = false;
                for mut buf in requests {
                    let msg = loop {
                        let read = if crlf {
                            file.read(&mut raw)
                        } else {
                            file.read(&mut buf)
                        };
                        match read {
                            Ok(0) => break Input::Eof,
                            Ok(len) if crlf => {
                                let len = lf_to_crlf(&raw[..len], &mut buf, &mut after_cr);
                                break Input::Data(Chunk { buf, len });
                            }
                            Ok(len) => break Input::Data(Chunk { buf, len }),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Input::Failed(e),
                        }
                    };
                    let last = !matches!(msg, Input::Data(_));
                    if tx.send(msg).is_err() {
                        return; // the loop has finished
                    }
                    let _ = waker.wake();
                    if last {
                        return;
                    }
                }
            })?;
        Ok(())
    }

    /// The next input, if a requested read has completed.
    fn try_next(&mut self) -> Option<Input> {
        let input = match self.rx.try_recv() {
            Ok(input) => input,
            Err(TryRecvError::Empty) => return None,
            // The thread ends only after sending Eof or Failed, so this is after the end.
            Err(TryRecvError::Disconnected) => Input::Eof,
        };
        self.outstanding = self.outstanding.saturating_sub(1);
        Some(input)
    }

    /// Keep a consumed buffer for the next read.
    fn recycle(&mut self, chunk: Chunk) {
        self.spare.push(chunk.buf);
    }
}

/// Copy `raw` into `out`, each LF that does not follow a CR as CR LF; `out` must have room
/// for twice `raw`. `after_cr` carries whether the previous read ended in CR. Returns the
/// length written.
pub(crate) fn lf_to_crlf(raw: &[u8], out: &mut [u8], after_cr: &mut bool) -> usize {
    let mut n = 0;
    for &b in raw {
        if b == b'\n' && !*after_cr {
            out[n] = b'\r';
            n += 1;
        }
        out[n] = b;
        n += 1;
        *after_cr = b == b'\r';
    }
    n
}

/// stdin shared by every connection. Each chunk read goes to every connection that was
/// established when it was read, so with several clients stdin is a broadcast; a chunk goes
/// back to the reader once every one of them has sent it. Connections name chunks by sequence
/// number, so none holds a buffer of its own.
pub(crate) struct Broadcast {
    source: Source,
    chunks: VecDeque<Chunk>,
    /// The sequence number of `chunks[0]`.
    first: u64,
    /// The sequence number at which stdin ended, once it has.
    end: Option<u64>,
    error: Option<io::Error>,
}

/// What a connection finds at its position in stdin.
pub(crate) enum Next<'a> {
    Data(&'a [u8]),
    /// Not read yet.
    Wait,
    /// stdin has ended (see [`Broadcast::error`] for how).
    End,
}

impl Broadcast {
    pub(crate) fn new(source: Source) -> Broadcast {
        Broadcast {
            source,
            chunks: VecDeque::new(),
            first: 0,
            end: None,
            error: None,
        }
    }

    /// Where a connection that joins now starts: at the next chunk to be read.
    pub(crate) fn position(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }

    /// The bytes at chunk `seq`, from `offset` on.
    pub(crate) fn at(&self, seq: u64, offset: usize) -> Next<'_> {
        let index = seq.saturating_sub(self.first) as usize;
        match self.chunks.get(index) {
            Some(chunk) => Next::Data(&chunk.bytes()[offset.min(chunk.len)..]),
            None if self.end == Some(seq) => Next::End,
            None => Next::Wait,
        }
    }

    /// Take what the reader has read, and ask it for more while buffers are free; true if
    /// anything new arrived. Called only while a connection wants input: stdin is read then
    /// and only then.
    pub(crate) fn pull(&mut self) -> bool {
        let mut got = false;
        while self.end.is_none() {
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
        while self.end.is_none()
            && self.chunks.len() + self.source.outstanding < BUFFERS_IN
            && self.source.request()
        {}
        got
    }

    /// Every connection has sent the chunks before `seq`: give them back to the reader.
    pub(crate) fn release(&mut self, seq: u64) {
        while self.first < seq {
            let Some(chunk) = self.chunks.pop_front() else {
                break;
            };
            self.source.recycle(chunk);
            self.first += 1;
        }
    }

    /// Why stdin ended, if reading it failed.
    pub(crate) fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }
}

/// Bytes leaving through a file descriptor (stdout) written on a thread.
pub(crate) struct Sink {
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
    pub(crate) fn stdout(waker: Arc<Waker>) -> io::Result<Sink> {
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        Sink::spawn(fd, waker)
    }

    pub(crate) fn spawn(fd: OwnedFd, waker: Arc<Waker>) -> io::Result<Sink> {
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
    pub(crate) fn buffer(&mut self) -> Option<Chunk> {
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
    pub(crate) fn send(&mut self, chunk: Chunk) -> u64 {
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
    pub(crate) fn written(&self, upto: u64) -> bool {
        self.written.load(Ordering::Acquire) >= upto
    }

    /// Whether nothing is left to wait for: everything queued is written, or the writer
    /// has stopped (it failed).
    pub(crate) fn settled(&self) -> bool {
        self.stopped
            || self.written(self.queued)
            || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The error that stopped the writer, if it failed.
    pub(crate) fn take_failure(&mut self) -> Option<io::Error> {
        let e = self.failure.lock().ok().and_then(|mut slot| slot.take());
        self.stopped |= e.is_some();
        e
    }

    /// Wait until everything queued is written; the error that stopped the writer, if any.
    pub(crate) fn finish(mut self) -> io::Result<()> {
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
            let n = lf_to_crlf(chunk, &mut buf, &mut after_cr);
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
