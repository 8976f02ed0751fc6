//! STARTTLS: the plaintext dialogue that some protocols speak before TLS starts on the same
//! connection, on either side, for the fourteen protocols `openssl s_client -starttls` knows
//! (`client`: what we say as their client; `server`: as their server). Each is a script for a
//! [`Preamble`].

mod client;
mod server;

use anyhow::Result;
use clap::ValueEnum;

use crate::preamble::{Preamble, Progress, Role};

/// The protocols, named as `openssl s_client -starttls` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Proto {
    Smtp,
    Lmtp,
    Pop3,
    Imap,
    Ftp,
    Xmpp,
    #[value(name = "xmpp-server")]
    XmppServer,
    Telnet,
    Irc,
    Ldap,
    Postgres,
    Mysql,
    Nntp,
    Sieve,
}

impl Proto {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proto::Smtp => "smtp",
            Proto::Lmtp => "lmtp",
            Proto::Pop3 => "pop3",
            Proto::Imap => "imap",
            Proto::Ftp => "ftp",
            Proto::Xmpp => "xmpp",
            Proto::XmppServer => "xmpp-server",
            Proto::Telnet => "telnet",
            Proto::Irc => "irc",
            Proto::Ldap => "ldap",
            Proto::Postgres => "postgres",
            Proto::Mysql => "mysql",
            Proto::Nntp => "nntp",
            Proto::Sieve => "sieve",
        }
    }
}

/// What our side says before the peer has said anything.
pub(crate) fn start(p: &mut Preamble, proto: Proto, role: Role) {
    match role {
        Role::Client => client::start(p, proto),
        Role::Server => server::start(p, proto),
    }
}

/// One step of the dialogue with what the inbox holds.
pub(crate) fn step(p: &mut Preamble, proto: Proto, role: Role) -> Result<Progress> {
    match role {
        Role::Client => client::step(p, proto),
        Role::Server => server::step(p, proto),
    }
}
