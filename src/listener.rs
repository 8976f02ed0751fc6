//! `stls listen`: bind, announce the address (and the ephemeral certificate's fingerprint),
//! then accept: one session (the first client to complete its handshake; those that fail
//! before are logged and forgotten), or with `-k` many at once on the one event loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::time::Instant;

use anyhow::{anyhow, Result};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use rustls::{ServerConfig, ServerConnection};

use crate::error::{classify, Class};
use crate::local::LocalEnd;
use crate::metrics;
use crate::relay::{Listening, Relay};
use crate::reload::Reload;
use crate::report;
use crate::route::Route;
use crate::session::{Options, Session};
use crate::settings::Listen;
use crate::status;
use crate::stream::{Listener, Peer, Stream};
use crate::systemd;
use crate::tls_socket::TlsSocket;

pub(crate) fn run(s: &Listen) -> Result<()> {
    // An event loop per thread, each with its own listening socket on the same port
    // (SO_REUSEPORT: the kernel spreads the clients). Always set: a new stls binds the port
    // while the old one drains, so a restart drops nothing.
    let threads = s.threads;
    let sock = s.at.bind(s.common.family)?;
    // Answering before the loops start: /readyz says 503 until they listen.
    let _status = status::announced(s.status.as_ref(), s.common.family)?;
    let nofile = raise_fd_limit();
    // SIGHUP swaps in a new configuration for the handshakes that follow, in every loop.
    let config = Arc::new(RwLock::new(s.config.clone()));
    let extra = (1..threads)
        .map(|_| s.at.again(&sock))
        .collect::<Result<Vec<_>>>()?;
    // Every loop catches its signals before the address is announced: a signal sent once
    // the address is known reaches them all.
    let ready = Start {
        barrier: Barrier::new(threads),
        failed: AtomicBool::new(false),
    };
    let result = std::thread::scope(|scope| {
        for sock in extra {
            let (config, ready) = (config.clone(), &ready);
            scope.spawn(move || {
                // The run's status is the first loop's: a signal is said once, there.
                if let Err(e) = serve(s, sock, config, nofile, threads, ready, false) {
                    if !matches!(classify(&e), Class::Interrupted | Class::Terminated) {
                        report::error(format_args!("{e:#}"));
                    }
                }
            });
        }
        // This loop's outcome is the run's.
        serve(s, sock, config, nofile, threads, &ready, true)
    });
    // Every loop has ended.
    crate::relay::say_drained();
    result
}

/// How the loops start together: each waits for the others to catch their signals; if one
/// could not start, none serves.
struct Start {
    barrier: Barrier,
    failed: AtomicBool,
}

/// Say where we listen (and the ephemeral certificate's fingerprint).
fn announce(s: &Listen, local: &str) {
    if s.ephemeral {
        report::info(format_args!("sha256 fingerprint {}", s.fingerprint));
    } else {
        report::verbose(format_args!(
            "certificate sha256 fingerprint {}",
            s.fingerprint
        ));
    }
    // Ready before it is said: whoever reads the line may ask /readyz at once.
    metrics::set_ready();
    report::note(
        report::Event::Listening,
        format_args!("listening on {local}"),
    );
    systemd::ready();
}

/// One event loop on `sock`; the first (`main`) also answers SIGHUP for all.
fn serve(
    s: &Listen,
    sock: Listener,
    config: Arc<RwLock<Arc<ServerConfig>>>,
    nofile: Option<Rlimit>,
    threads: usize,
    ready: &Start,
    main: bool,
) -> Result<()> {
    let relay = setup(s, sock, config, nofile, threads, main);
    if relay.is_err() {
        ready.failed.store(true, Ordering::SeqCst);
    }
    ready.barrier.wait();
    let (relay, local) = relay?;
    if ready.failed.load(Ordering::SeqCst) {
        return Err(anyhow!("another event loop could not start"));
    }
    if main {
        announce(s, &local);
    }
    relay.run()
}

/// One loop's relay, listening on `sock`.
fn setup(
    s: &Listen,
    sock: Listener,
    config: Arc<RwLock<Arc<ServerConfig>>>,
    nofile: Option<Rlimit>,
    threads: usize,
    main: bool,
) -> Result<(Relay, String)> {
    let local = sock.shown();
    let end = match &s.common.local {
        LocalEnd::Exec(program) => LocalEnd::Exec(program.clone().with_nofile(nofile)),
        other => other.clone(),
    };
    let mut relay = Relay::new(Options {
        stall: s.keep_open.then_some(s.stall_timeout),
        local: end.clone(),
        many: s.keep_open,
        ..s.common.options(s.explain.clone())
    })?;
    let (limit, option) = s.handshake_limit;
    let current = config.clone();
    let starttls = s.starttls.clone();
    let accept_proxy = s.accept_proxy;
    let passthrough = s.passthrough.clone();
    // TCP_NODELAY: every listener has it, and Linux copies it to the sockets it accepts.
    let accept = move |sock: Stream, peer: &Peer| -> Result<Session> {
        // A TCP peer's address is canonical (an IPv4 client of a [::] socket is named by its
        // IPv4 address), and so is what its command is told (STLS_PEER_ADDR).
        let served = current
            .read()
            .map_or_else(|e| e.into_inner().clone(), |c| c.clone());
        let tls = ServerConnection::new(served).map_err(|e| anyhow!("TLS setup: {e}"))?;
        Ok(Session::new(
            TlsSocket::new(sock, tls.into()),
            format!("client {peer}"),
            Some(peer.clone()),
            Some((Instant::now() + limit, option)),
            &end,
            Route::server(
                accept_proxy,
                passthrough.as_ref(),
                starttls
                    .as_ref()
                    .map(|(proto, name)| (*proto, name.as_str())),
                &format!("client {peer}"),
            )
            .stages,
        )
        .accepted())
    };
    relay.listen(Listening {
        sock,
        keep_open: s.keep_open,
        // The limits are shared out among the loops.
        max_conns: (s.max_conns / threads).max(1),
        max_handshakes: (s.max_handshakes / threads).max(1),
        accept: Box::new(accept),
        reload: main.then(|| reload(s, config)).flatten(),
        drain: s.drain,
        main,
    })?;
    Ok((relay, local))
}

/// What SIGHUP and `--reload-every` do: read the files again, for the handshakes of every
/// loop. A long-running listener with an ephemeral certificate answers SIGHUP too, with
/// nothing to reload; a one-shot one leaves SIGHUP as it is.
fn reload(s: &Listen, config: Arc<RwLock<Arc<ServerConfig>>>) -> Option<Reload> {
    let Some((files, presented)) = s.reload.clone() else {
        return s.keep_open.then(|| Reload::new(None, Vec::new(), None));
    };
    let paths = files.paths();
    let load = Box::new(move || {
        let (new, fingerprint) = files.load(&presented)?;
        let mut slot = config.write().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(new);
        Ok(format!(
            "serving the certificate with sha256 fingerprint {fingerprint}"
        ))
    });
    Some(Reload::new(Some(load), paths, s.reload_every))
}

/// Many connections need many descriptors: raise the soft limit to the hard one (running out
/// anyway is handled where connections are accepted). Returns the limit as it was, when it was
/// raised, for `-e` commands to start with.
fn raise_fd_limit() -> Option<Rlimit> {
    let limit = getrlimit(Resource::Nofile);
    // None is unlimited: nothing to raise to, or nothing to raise.
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else {
        return None;
    };
    if current >= maximum {
        return None;
    }
    let raised = Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    setrlimit(Resource::Nofile, raised).ok().map(|()| limit)
}
