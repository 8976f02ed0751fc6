//! What comes before the TLS handshake, for either side: on the way to a target, each proxy
//! hop's request ([`Hop`], under a TLS layer for an `https://` proxy), then a STARTTLS
//! client; for a client of `listen`, the PROXY header of `--accept-proxy`, then a STARTTLS
//! server. [`advance`] moves the stages on in order; `preamble` plays each dialogue.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use crate::backend::{Backend, Routes};
use crate::error::Class;
use crate::events::Ready;
use crate::net::HostPort;
use crate::preamble::{Fed, Talk};
use crate::preread::Preread;
use crate::proxied::{AcceptProxy, ProxyHeader};
use crate::proxy::{self, bypass, Hop, Proxies, ProxyUrl, Scheme, Then};
use crate::resolve::Resolver;
use crate::starttls::{Proto, StartTls};
use crate::stream::Address;
use crate::wire::Wire;

/// A phase before the handshake.
pub(crate) enum Stage {
    /// From here on, speak through a TLS session with an `https://` proxy.
    Layer(Box<ClientConnection>),
    /// A proxy hop's request.
    Proxy(Box<Talk<Hop>>),
    /// A STARTTLS dialogue.
    StartTls(Box<Talk<StartTls>>),
    /// `--accept-proxy`: the load balancer's PROXY header.
    ProxyIn(Box<Talk<AcceptProxy>>),
    /// `--passthrough`: the ClientHello, read for its name.
    Preread(Box<Talk<Preread>>),
}

/// What the stages before a client's handshake learnt.
#[derive(Default)]
pub(crate) struct Heard {
    /// The PROXY header of `--accept-proxy`.
    pub proxy: Option<ProxyHeader>,
    /// The backend of `--passthrough` the client's name chose, and that name.
    pub passthrough: Option<(Backend, String)>,
}

/// The way to a target, or from a client.
pub(crate) struct Route {
    /// The proxies on the way (for `-v`).
    pub hops: Vec<ProxyUrl>,
    /// What comes before the TLS handshake.
    pub stages: VecDeque<Stage>,
}

impl Route {
    /// The stages to reach `target` through `proxies` (named `name` in a STARTTLS dialogue),
    /// then `starttls`. A Unix socket is reached directly. A name a `socks5://` proxy is to be given as an address is looked up
    /// from here on, by `resolver`, until `deadline`; the hop waits for the answer when it
    /// needs it.
    pub(crate) fn client(
        proxies: &Proxies,
        target: &Address,
        name: &str,
        starttls: Option<Proto>,
        resolver: &Resolver,
        deadline: Option<Instant>,
    ) -> Result<Route> {
        let (chain, last): (Vec<ProxyUrl>, _) = match target {
            Address::Tcp(hp) if !bypass(&proxies.no_proxy, &hp.host) => {
                (proxies.chain.clone(), Some(hp))
            }
            _ => (Vec::new(), None),
        };
        let peer = target.to_string();
        let mut stages = VecDeque::new();
        for (i, proxy) in chain.iter().enumerate() {
            let Some(next) = chain.get(i + 1).map(|p| &p.addr).or(last).cloned() else {
                break;
            };
            let mut explain = None;
            if proxy.scheme == Scheme::Https {
                let Some((config, explainer)) = &proxies.tls else {
                    return Err(anyhow!("no TLS settings for {proxy}"));
                };
                let name = ServerName::try_from(proxy.addr.host.clone())
                    .map_err(|_| anyhow!("{proxy}: not a valid server name"))?;
                let tls = ClientConnection::new(config.clone(), name)
                    .map_err(|e| anyhow!("TLS setup for {proxy}: {e}"))?;
                stages.push_back(Stage::Layer(Box::new(tls)));
                explain = Some(explainer.clone());
            }
            let lookup = match (proxy.scheme, next.host.parse::<IpAddr>()) {
                (Scheme::Socks5, Err(_)) => Some(resolver.lookup(&next, deadline)),
                _ => None,
            };
            let hop = Hop::new(proxy.clone(), next, lookup, explain);
            stages.push_back(Stage::Proxy(Box::new(Talk::new(hop, &peer))));
        }
        if let Some(proto) = starttls {
            let client = StartTls::client(proto, name);
            stages.push_back(Stage::StartTls(Box::new(Talk::new(client, &peer))));
        }
        Ok(Route {
            hops: chain,
            stages,
        })
    }

    /// The stages before the handshake with a client named `peer` in messages: the PROXY
    /// header with `accept_proxy`, the ClientHello read for `passthrough`'s names, then
    /// `starttls`'s server dialogue, naming itself as given, if there is one.
    pub(crate) fn server(
        accept_proxy: bool,
        passthrough: Option<&Arc<Routes>>,
        starttls: Option<(Proto, &str)>,
        peer: &str,
    ) -> Route {
        let header = accept_proxy.then(|| {
            let heard = AcceptProxy { heard: None };
            Stage::ProxyIn(Box::new(Talk::new(heard, peer)))
        });
        let preread = passthrough.map(|routes| {
            let preread = Preread::new(routes.clone());
            Stage::Preread(Box::new(Talk::new(preread, peer)))
        });
        let dialogue = starttls.map(|(proto, name)| {
            let server = StartTls::server(proto, name);
            Stage::StartTls(Box::new(Talk::new(server, peer)))
        });
        let stages = header.into_iter().chain(preread).chain(dialogue).collect();
        Route {
            hops: Vec::new(),
            stages,
        }
    }

    /// Wait until `deadline` for the lookups the hops started (`wait` set it, for the
    /// message): for a caller with no loop running yet to be woken by their answers.
    pub(crate) fn settle(&self, deadline: Option<Instant>, wait: Option<Duration>) -> Result<()> {
        for stage in &self.stages {
            let Stage::Proxy(t) = stage else { continue };
            if let Some(lookup) = &t.dialogue.lookup {
                if !lookup.wait(deadline) {
                    return Err(lookup
                        .timed_out(wait)
                        .context(format!("proxy {}", t.dialogue.proxy)));
                }
            }
        }
        Ok(())
    }
}

/// Move the stages on over `wire`: `Ok(true)` once all are done and TLS may start. What a
/// dialogue read past its end is put back for the next. What a client's stages learnt is put
/// in `heard`; a passthrough stops the stages there.
pub(crate) fn advance(
    stages: &mut VecDeque<Stage>,
    wire: &mut Wire,
    ready: &mut Ready,
    heard: &mut Heard,
) -> Result<bool> {
    loop {
        let leftover = match stages.front_mut() {
            None => return Ok(true),
            Some(Stage::Layer(_)) => {
                if let Some(Stage::Layer(tls)) = stages.pop_front() {
                    // An https:// proxy has said nothing before its TLS handshake: bytes that
                    // came with the previous hop's reply are not its.
                    if !wire.push_layer(*tls) {
                        return Err(Class::Network.err(
                            "a proxy sent bytes after its reply, before the next proxy's TLS \
                             handshake (an injection attempt?)",
                        ));
                    }
                }
                continue;
            }
            Some(Stage::Proxy(t)) => match t.drive(wire, ready)? {
                true => std::mem::take(&mut t.p.leftover),
                false => return Ok(false),
            },
            Some(Stage::StartTls(t)) => match t.drive(wire, ready)? {
                true => std::mem::take(&mut t.p.leftover),
                false => return Ok(false),
            },
            Some(Stage::ProxyIn(t)) => match t.drive(wire, ready)? {
                true => {
                    heard.proxy = t.dialogue.heard.take();
                    std::mem::take(&mut t.p.leftover)
                }
                false => return Ok(false),
            },
            Some(Stage::Preread(t)) => match t.drive(wire, ready)? {
                true => {
                    heard.passthrough = t.dialogue.chosen.take();
                    let read = std::mem::take(&mut t.p.leftover);
                    if heard.passthrough.is_some() {
                        // The rest is not ours: every byte read goes on as it came.
                        stages.clear();
                        wire.unread(read);
                        ready.read = true;
                        return Ok(true);
                    }
                    read
                }
                false => return Ok(false),
            },
        };
        let done = stages.pop_front();
        if leftover.is_empty() {
            continue;
        }
        if let Some(Stage::Proxy(hop)) = done {
            let then = match stages.front() {
                Some(Stage::StartTls(_)) => Then::StartTls,
                Some(Stage::Proxy(next)) => Then::Proxy(&next.dialogue.proxy),
                Some(Stage::Layer(_)) => Then::ProxyTls,
                Some(Stage::ProxyIn(_) | Stage::Preread(_)) | None => Then::Target,
            };
            hop.dialogue.check_after_reply(&hop.p, &leftover, then)?;
        }
        wire.unread(leftover);
        // Readable now, whatever the socket says.
        ready.read = true;
    }
}

/// What the first unfinished dialogue is, for a timeout's message.
pub(crate) fn current(stages: &VecDeque<Stage>) -> Option<String> {
    stages.iter().find_map(|s| match s {
        Stage::Proxy(t) => Some(t.p.what().to_string()),
        Stage::StartTls(t) => Some(t.p.what().to_string()),
        Stage::ProxyIn(t) => Some(t.p.what().to_string()),
        Stage::Preread(t) => Some(t.p.what().to_string()),
        Stage::Layer(_) => None,
    })
}

/// Whether a `socks5://` hop has a lookup whose answer it has not taken yet: it needs a turn
/// when a lookup answers.
pub(crate) fn awaits_lookup(stages: &VecDeque<Stage>) -> bool {
    stages
        .iter()
        .any(|s| matches!(s, Stage::Proxy(t) if t.dialogue.lookup.is_some()))
}

/// When the first unfinished dialogue is a `socks5://` hop still waiting for the address of
/// the name it is to send: that name, for a timeout's message.
pub(crate) fn looking_up(stages: &VecDeque<Stage>) -> Option<&str> {
    match stages.iter().find(|s| !matches!(s, Stage::Layer(_)))? {
        Stage::Proxy(t) => t
            .dialogue
            .lookup
            .as_ref()
            .filter(|l| l.pending())
            .map(|l| l.host()),
        _ => None,
    }
}

/// When the first unfinished dialogue is a STARTTLS client still waiting for a greeting that
/// a server of its protocol sends at once: what that silence suggests, for a timeout's
/// message.
pub(crate) fn silence(stages: &VecDeque<Stage>) -> Option<&'static str> {
    match stages.iter().find(|s| !matches!(s, Stage::Layer(_)))? {
        Stage::StartTls(t) if t.unheard() => t.dialogue.silence(),
        _ => None,
    }
}

/// A dialogue that [`feed`] plays without a socket, for the fuzz targets (fuzz/) and the
/// tests: the peer's side is the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialogue {
    /// An `http://` proxy's reply to CONNECT; `credentials`: its URL has a user and password.
    HttpProxy { credentials: bool },
    /// A SOCKS4a proxy's reply.
    Socks4a,
    /// A SOCKS5 proxy's replies: the method, the authentication if asked, the connect.
    Socks5 { credentials: bool },
    /// What an XMPP server says to our STARTTLS client.
    XmppClient,
    /// What an XMPP client says to our STARTTLS server.
    XmppServer,
}

/// Play `dialogue` with the peer's bytes arriving in `pieces`, one read each, as the event
/// loop does; after the go-ahead, the pieces are the next phase's.
pub fn feed<'a>(dialogue: Dialogue, pieces: impl IntoIterator<Item = &'a [u8]>) -> Fed {
    const PEER: &str = "target.example:443";
    let proxy = |url: &str| -> Result<Talk<Hop>, String> {
        let next = HostPort {
            host: "target.example".to_string(),
            port: 443,
        };
        Ok(Talk::new(
            Hop::new(proxy::parse(url)?, next, None, None),
            PEER,
        ))
    };
    let made = match dialogue {
        Dialogue::HttpProxy { credentials: false } => proxy("http://proxy.example:3128"),
        Dialogue::HttpProxy { credentials: true } => proxy("http://u:p@proxy.example:3128"),
        Dialogue::Socks4a => proxy("socks4a://proxy.example:1080"),
        Dialogue::Socks5 { credentials: false } => proxy("socks5h://proxy.example:1080"),
        Dialogue::Socks5 { credentials: true } => proxy("socks5h://u:p@proxy.example:1080"),
        Dialogue::XmppClient => {
            let client = StartTls::client(Proto::Xmpp, "target.example");
            return Talk::new(client, PEER).play(pieces);
        }
        Dialogue::XmppServer => {
            let server = StartTls::server(Proto::Xmpp, "target.example");
            return Talk::new(server, "client").play(pieces);
        }
    };
    match made {
        Ok(hop) => hop.play(pieces),
        Err(e) => Fed::Failed(e),
    }
}
