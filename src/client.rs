//! `stls connect`: resolve, connect within `-w`, handshake, relay.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConnection;

use crate::error::{classify, Class};
use crate::route::Route;
use crate::starttls::{self, Proto};

use crate::local::{LocalEnd, TcpEnd};
use crate::net::{self, Dialer};
use crate::relay::{Listening, Relay};
use crate::reload::Reload;
use crate::report;
use crate::resolve::Resolver;
use crate::session::{HandshakeLimit, Options, Session};
use crate::settings::{Connect, GREETING_WAIT};
use crate::stream::{Address, ListenAt, Peer, Stream};
use crate::systemd;
use crate::tls_socket::TlsSocket;
use crate::unix::Credentials;

pub(crate) fn run(s: &Connect) -> Result<()> {
    if let Some(at) = &s.from {
        return tunnel(s, at);
    }
    let (wait, deadline) = (s.common.wait, s.common.wait.map(|w| Instant::now() + w));
    // -w bounds the lookups too; a socks5:// proxy's target is looked up meanwhile.
    let resolver = Resolver::new(s.common.family, None);
    let route = Route::client(
        &s.proxies, &s.target, &s.name, s.starttls, &resolver, deadline,
    )?;
    let sock = match (route.hops.first(), &s.target) {
        (None, Address::Unix(path)) => Stream::Unix(path.connect()?),
        (None, Address::Tcp(target)) => {
            let addrs = resolver.resolve(target, deadline, wait)?;
            Stream::Tcp(net::connect(Dialer::to(target, addrs, deadline))?)
        }
        (Some(proxy), _) => {
            let addrs = resolver
                .resolve(&proxy.addr, deadline, wait)
                .map_err(|e| e.context(format!("proxy {proxy}")))?;
            let name = format!("proxy {proxy}");
            Stream::Tcp(net::connect(Dialer::new(
                name,
                &proxy.addr.host,
                addrs,
                deadline,
            ))?)
        }
    };
    route.settle(deadline, wait)?;
    // Without -w, a STARTTLS dialogue (and the handshake after it) gets the bound inspect and
    // --from give it: a server that greets and then says nothing more must not hold the run
    // for ever. The wait for the greeting is part of it.
    let limit = s.handshake_limit;
    let deadline = deadline.or_else(|| limit.map(|(d, _)| Instant::now() + d));
    let mut sock = sock;
    if let (Some(proto), true) = (s.starttls, route.hops.is_empty()) {
        await_greeting(&mut sock, proto, &s.target, s.common.wait, deadline)?;
    }
    let addr = match &sock {
        Stream::Tcp(tcp) => tcp.peer_addr().ok(),
        Stream::Unix(_) => None,
    };
    // What an -e command is told of the server: its address, or a Unix socket's credentials.
    let server = match (&sock, &s.target) {
        (Stream::Unix(unix), Address::Unix(path)) => Some(Peer::Unix {
            at: path.clone(),
            cred: Credentials::of(unix),
        }),
        _ => addr.map(Peer::Ip),
    };
    let tls = ClientConnection::new(s.config.clone(), s.server_name.clone())
        .map_err(|e| anyhow!("TLS setup: {e}"))?;
    let mut relay = Relay::new(s.common.options(s.explain.clone()))?;
    // Said once signals are ours (the relay catches them): from here SIGINT/SIGTERM end the
    // connection with 130/143.
    if let Stream::Unix(_) = &sock {
        report::verbose(format_args!("connected to {}", s.target));
    }
    if let Some(addr) = addr {
        match route.hops.first() {
            None => report::verbose(format_args!("connected to {} ({addr})", s.target)),
            Some(first) => report::verbose(format_args!("connected to proxy {first} ({addr})")),
        }
    }
    for (i, hop) in route.hops.iter().enumerate() {
        let next = route
            .hops
            .get(i + 1)
            .map_or(s.target.to_string(), |h| h.addr.to_string());
        report::verbose(format_args!("proxy {hop} is asked for {next}"));
    }
    let mut conn = TlsSocket::new(sock, tls.into());
    // Straight to TLS: a plain-text answer to the ClientHello is kept, to be named.
    let first = route.stages.is_empty().then(|| conn.sock.keep_first());
    let peer = Session::new(
        conn,
        s.target.to_string(),
        server,
        deadline.zip(limit.map(|(_, option)| option)),
        &s.common.local,
        route.stages,
    )
    .via_proxy(route.hops.first().map(|hop| hop.to_string()));
    relay.add(peer)?;
    relay.run().map_err(|e| {
        let plain = first
            .filter(|_| classify(&e) == Class::Handshake)
            .and_then(|f| starttls::plain_text_answer(&s.target.to_string(), &f.get()));
        plain.unwrap_or(e)
    })
}

/// For a protocol whose server speaks first: wait for it to (until `deadline`, or
/// [`GREETING_WAIT`]). A server that stays silent is most likely waiting for a ClientHello:
/// an implicit-TLS port, which is said rather than waited on for ever. What it sends stays
/// in the socket for the dialogue.
fn await_greeting(
    sock: &mut Stream,
    proto: Proto,
    target: &Address,
    wait: Option<Duration>,
    deadline: Option<Instant>,
) -> Result<()> {
    if !proto.server_speaks_first() {
        return Ok(());
    }
    let until = deadline.unwrap_or_else(|| Instant::now() + GREETING_WAIT);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(sock, Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let spoke = loop {
        let left = until.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(left)) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
        // Readable: a greeting, or an end, which the dialogue reports.
        if !events.is_empty() {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
    };
    poll.registry().deregister(sock)?;
    if spoke {
        return Ok(());
    }
    let (secs, option) = match wait {
        Some(w) => (w.as_secs_f64(), "-w"),
        None => (
            GREETING_WAIT.as_secs_f64(),
            "the wait for a greeting without -w",
        ),
    };
    Err(Class::Timeout.err(format!(
        "{target}: the {} STARTTLS dialogue was not done within {secs}s ({option}); {}",
        proto.name(),
        starttls::IMPLICIT_SILENT
    )))
}

/// `connect --from`: accept plain TCP connections and give each its own TLS connection to
/// the target, through the same proxies and dialogue; many at once on the one event loop.
fn tunnel(s: &Connect, at: &ListenAt) -> Result<()> {
    let sock = at.bind(s.common.family)?;
    let local = sock.shown();
    // Resolved once, before the loop runs: the first hop's addresses.
    let wait = s.common.wait;
    let first = match &s.target {
        Address::Tcp(target) => {
            let first = s.proxies.first_hop(target);
            let first_name = match s.proxies.chain.first() {
                Some(proxy) if first != *target => format!("proxy {proxy}"),
                _ => first.to_string(),
            };
            let addrs = Resolver::new(s.common.family, None).resolve(
                &first,
                wait.map(|w| Instant::now() + w),
                wait,
            )?;
            Some((first, first_name, addrs))
        }
        Address::Unix(_) => None,
    };
    let mut relay = Relay::new(Options {
        many: true,
        ..s.common.options(s.explain.clone())
    })?;
    // A name a socks5:// proxy is given is looked up for each connection, off the loop.
    let resolver = Resolver::new(s.common.family, Some(relay.waker()));
    // SIGHUP and --reload-every put a new configuration here, for the connections after.
    let current = Rc::new(RefCell::new(s.config.clone()));
    let config = current.clone();
    let server_name = s.server_name.clone();
    let (target, name, starttls) = (s.target.clone(), s.name.clone(), s.starttls);
    let proxies = s.proxies.clone();
    // Settings decide one for --from; the default is --from's own.
    let limit = s
        .handshake_limit
        .unwrap_or((net::CONNECT_TIMEOUT, HandshakeLimit::FromDefault));
    let accept = move |plain: Stream, from: &Peer| -> Result<Session> {
        plain.set_nodelay();
        // Connecting, any lookup and dialogue, and the handshake: -w, else as long as connect
        // gives one address.
        let (until, option) = (Instant::now() + limit.0, limit.1);
        // Non-blocking: the connection is made while the loop goes on, each address in turn.
        let (sock, dialer) = match (&first, &target) {
            (Some((first, first_name, addrs)), _) => {
                let mut dialer =
                    Dialer::new(first_name.clone(), &first.host, addrs.clone(), Some(until));
                let sock = dialer.open();
                (sock.map(Stream::Tcp), Some(dialer))
            }
            (None, Address::Unix(path)) => (path.connect().map(Stream::Unix), None),
            (None, Address::Tcp(_)) => (Err(anyhow!("no address to connect to")), None),
        };
        let sock = sock.map_err(|e| e.context(format!("{target} for {from}")))?;
        let tls = ClientConnection::new(config.borrow().clone(), server_name.clone())
            .map_err(|e| anyhow!("TLS setup: {e}"))?;
        let route = Route::client(&proxies, &target, &name, starttls, &resolver, Some(until))?;
        let session = Session::new(
            TlsSocket::new(sock, tls.into()),
            format!("{target} for {from}"),
            Some(from.clone()),
            Some((until, option)),
            &LocalEnd::Accepted,
            route.stages,
        )
        .via_proxy(route.hops.first().map(|hop| hop.to_string()));
        let session = match dialer {
            Some(dialer) => session.dialing(dialer),
            None => session,
        };
        Ok(session.with_local(TcpEnd::new(plain, Vec::new())))
    };
    let _status = crate::status::announced(s.status.as_ref(), s.common.family)?;
    relay.listen(Listening {
        sock,
        keep_open: true,
        max_conns: 1000,
        max_handshakes: 256,
        accept: Box::new(accept),
        reload: s.reload.clone().map(|files| {
            let paths = files.paths();
            let load = Box::new(move || {
                *current.borrow_mut() = files.load()?;
                Ok("new connections use the files as they are now".to_string())
            });
            Reload::new(Some(load), paths, s.reload_every)
        }),
        drain: s.drain,
        main: true,
    })?;
    // Ready before it is said: whoever reads the line may ask /readyz at once.
    crate::metrics::set_ready();
    report::note(
        report::Event::Listening,
        format_args!("listening on {local}"),
    );
    systemd::ready();
    let result = relay.run();
    crate::relay::say_drained();
    result
}
