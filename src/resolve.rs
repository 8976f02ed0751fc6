//! Name lookups off the event loop. getaddrinfo blocks, for as long as a DNS server that does
//! not answer makes it, so lookups run on a small pool of threads shared by every caller (the
//! targets of `connect` and `inspect`, the names a `socks5://` proxy is given), each answer
//! waking the caller's loop through its `Waker`.
//!
//! An IP literal is answered at once, without a thread: it never waits behind a name. A lookup
//! has a deadline (`-w`); its owner stops waiting then, and a lookup nobody waits for any more
//! is not started, or its answer is dropped when its thread comes back. At most [`THREADS`]
//! lookups run at once and at most [`QUEUED`] wait for a thread.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use mio::Waker;

use crate::error::{io_phrase, Class};
use crate::net::{self, Family, HostPort};

/// Lookups running at once, at most: a few dead names must not hold up the others.
const THREADS: usize = 32;
/// Lookups waiting for a thread, at most; beyond that a lookup fails at once.
const QUEUED: usize = 4096;
/// How long a thread with nothing to do stays for the next lookup.
const IDLE: Duration = Duration::from_secs(10);

/// Lookups for one caller: the address family wanted, and the loop to wake with each answer
/// (none for a caller that waits, see [`Lookup::wait`]).
#[derive(Clone)]
pub(crate) struct Resolver {
    family: Family,
    waker: Option<Arc<Waker>>,
}

impl Resolver {
    pub(crate) fn new(family: Family, waker: Option<Arc<Waker>>) -> Resolver {
        Resolver { family, waker }
    }

    /// Start looking `hp` up; its answer is wanted until `deadline`.
    pub(crate) fn lookup(&self, hp: &HostPort, deadline: Option<Instant>) -> Lookup {
        let slot = Arc::new(Slot::default());
        let lookup = Lookup {
            host: hp.host.clone(),
            slot: slot.clone(),
        };
        if let Ok(ip) = hp.host.parse::<IpAddr>() {
            slot.answer(net::admit(
                hp,
                vec![SocketAddr::new(ip, hp.port)],
                self.family,
            ));
            return lookup;
        }
        let job = Job {
            hp: hp.clone(),
            family: self.family,
            deadline,
            slot,
            waker: self.waker.clone(),
        };
        if let Err((job, why)) = pool().submit(job) {
            job.slot.answer(Err(
                Class::Network.err(format!("cannot look up {}: {why}", hp.host))
            ));
        }
        lookup
    }

    /// Look `hp` up and wait for the answer until `deadline`; `wait` is what set it, for the
    /// message.
    pub(crate) fn resolve(
        &self,
        hp: &HostPort,
        deadline: Option<Instant>,
        wait: Option<Duration>,
    ) -> Result<Vec<SocketAddr>> {
        let mut lookup = self.lookup(hp, deadline);
        match lookup.wait(deadline) {
            true => lookup.poll().unwrap_or_else(|| Err(lookup.timed_out(wait))),
            false => Err(lookup.timed_out(wait)),
        }
    }
}

/// One lookup under way. Dropping it abandons the lookup.
pub(crate) struct Lookup {
    host: String,
    slot: Arc<Slot>,
}

impl Lookup {
    /// A lookup with nothing to look up (a Unix socket): answered already, with no address.
    pub(crate) fn nothing(host: String) -> Lookup {
        let slot = Arc::new(Slot::default());
        slot.answer(Ok(Vec::new()));
        Lookup { host, slot }
    }

    /// The name looked up.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Whether the answer is still to come.
    pub(crate) fn pending(&self) -> bool {
        lock(&self.slot.answer).is_none()
    }

    /// The answer, if it has come; it is handed out once.
    pub(crate) fn poll(&mut self) -> Option<Result<Vec<SocketAddr>>> {
        lock(&self.slot.answer).take()
    }

    /// Wait until the answer has come (true) or `until` has passed (false). Only for a caller
    /// that has no loop to run meanwhile.
    pub(crate) fn wait(&self, until: Option<Instant>) -> bool {
        let mut answer = lock(&self.slot.answer);
        while answer.is_none() {
            answer = match until.map(|u| u.saturating_duration_since(Instant::now())) {
                None => self
                    .slot
                    .answered
                    .wait(answer)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(left) if left.is_zero() => return false,
                Some(left) => {
                    self.slot
                        .answered
                        .wait_timeout(answer, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        true
    }

    /// The error for a lookup still unanswered when `wait` (`-w`) ran out.
    pub(crate) fn timed_out(&self, wait: Option<Duration>) -> anyhow::Error {
        let within = match wait {
            Some(w) => format!(": no answer within {}s (-w)", w.as_secs_f64()),
            None => String::new(),
        };
        Class::Timeout.err(format!("timed out looking up {}{within}", self.host))
    }
}

/// Where a lookup's answer is left for its owner.
#[derive(Default)]
struct Slot {
    answer: Mutex<Option<Result<Vec<SocketAddr>>>>,
    answered: Condvar,
}

impl Slot {
    fn answer(&self, answer: Result<Vec<SocketAddr>>) {
        *lock(&self.answer) = Some(answer);
        self.answered.notify_all();
    }
}

struct Job {
    hp: HostPort,
    family: Family,
    deadline: Option<Instant>,
    slot: Arc<Slot>,
    waker: Option<Arc<Waker>>,
}

impl Job {
    /// Whether anybody still waits for the answer: the owner holds the other reference to the
    /// slot until it gives up, and gives up at its deadline.
    fn wanted(&self) -> bool {
        Arc::strong_count(&self.slot) > 1 && self.deadline.is_none_or(|d| Instant::now() < d)
    }

    fn run(self) {
        let answer = net::resolve(&self.hp, self.family);
        self.slot.answer(answer);
        if let Some(waker) = &self.waker {
            // A loop that is gone has nothing to wake.
            let _ = waker.wake();
        }
    }
}

struct Pool {
    state: Mutex<State>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State::default()),
        work: Condvar::new(),
    })
}

/// A poisoned lock only means a thread panicked while holding it; what it guards is a queue
/// or an answer, whole either way.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    /// Queue `job`, starting a thread for it if none is free; the job back, and why, if it
    /// cannot be taken.
    fn submit(&'static self, job: Job) -> std::result::Result<(), (Job, String)> {
        let mut state = lock(&self.state);
        // Lookups abandoned while waiting make room.
        state.queue.retain(Job::wanted);
        if state.queue.len() >= QUEUED {
            return Err((job, format!("{QUEUED} lookups are waiting already")));
        }
        state.queue.push_back(job);
        if state.queue.len() > state.idle && state.threads < THREADS {
            let spawned = std::thread::Builder::new()
                .name("lookup".into())
                .spawn(move || self.work());
            match spawned {
                Ok(_) => state.threads += 1,
                // No thread now: the job waits for a running one, or fails if there is none.
                Err(e) if state.threads == 0 => {
                    if let Some(job) = state.queue.pop_back() {
                        let why = format!("no thread to look it up: {}", io_phrase(&e));
                        return Err((job, why));
                    }
                }
                Err(_) => {}
            }
        }
        self.work.notify_one();
        Ok(())
    }

    /// A thread's life: take jobs until none comes for [`IDLE`].
    fn work(&self) {
        let mut state = lock(&self.state);
        loop {
            if let Some(job) = state.queue.pop_front() {
                if job.wanted() {
                    drop(state);
                    job.run();
                    state = lock(&self.state);
                }
                continue;
            }
            state.idle += 1;
            let (next, waited) = self
                .work
                .wait_timeout(state, IDLE)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str) -> HostPort {
        HostPort {
            host: host.into(),
            port: 443,
        }
    }

    #[test]
    fn literals_are_answered_at_once() {
        let r = Resolver::new(Family::Any, None);
        let mut l = r.lookup(&hp("192.0.2.1"), None);
        let addrs = l.poll().expect("answered").expect("an address");
        assert_eq!(addrs, vec!["192.0.2.1:443".parse().unwrap()]);
        assert!(l.poll().is_none(), "handed out once");
        let v6 = Resolver::new(Family::V6, None);
        let mut l = v6.lookup(&hp("192.0.2.1"), None);
        assert!(l.poll().expect("answered").is_err());
    }
}
