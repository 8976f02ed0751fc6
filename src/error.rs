//! Failure classes and their exit statuses.
//!
//! Errors travel as `anyhow::Error`; where the exit status depends on what went wrong, the
//! error chain carries a [`Fail`] that names its [`Class`]. Anything unclassified is "other"
//! (exit 1). The mapping from class to status lives here and nowhere else.

use std::fmt;
use std::io;

/// What kind of failure ended the run; each has its own exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Bad file, bad PEM, I/O on stdin/stdout: exit 1.
    Other,
    /// Bad flags or arguments: exit 2.
    Usage,
    /// Resolve, refused, bind, reset: exit 3.
    Network,
    /// The TLS handshake failed, or the peer rejected us: exit 4.
    Handshake,
    /// We rejected the peer's certificate: exit 5.
    CertRejected,
    /// The transfer is incomplete: the peer ended the TCP stream without close_notify, or
    /// ended the connection before our input was all sent: exit 6.
    Incomplete,
    /// `-w` or `-i` expired: exit 7.
    Timeout,
    /// `inspect --expires-within`: a verified certificate expires soon: exit 8.
    Expiring,
    /// `inspect --require`: a target does not meet a requirement its probes checked: exit 9.
    Policy,
    /// SIGINT arrived: exit 130.
    Interrupted,
    /// SIGTERM arrived: exit 143.
    Terminated,
}

impl Class {
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Class::Other => 1,
            Class::Usage => 2,
            Class::Network => 3,
            Class::Handshake => 4,
            Class::CertRejected => 5,
            Class::Incomplete => 6,
            Class::Timeout => 7,
            Class::Expiring => 8,
            Class::Policy => 9,
            Class::Interrupted => 130,
            Class::Terminated => 143,
        }
    }

    /// Wrap a message as an error of this class.
    pub(crate) fn err(self, msg: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Fail {
            class: self,
            msg: msg.into(),
        })
    }
}

/// An exit status for a failure already reported (by `inspect`, on stdout): nothing more is
/// printed.
pub(crate) fn reported(class: Class) -> anyhow::Error {
    class.err("")
}

/// An error whose class decides the exit status.
#[derive(Debug)]
pub(crate) struct Fail {
    pub class: Class,
    pub msg: String,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Fail {}

/// The class of an error: the outermost [`Fail`] in its chain, else "other".
pub(crate) fn classify(err: &anyhow::Error) -> Class {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Fail>().map(|f| f.class))
        .unwrap_or(Class::Other)
}

/// An I/O error as a short lower-case phrase, without Rust's "(os error N)" suffix.
pub(crate) fn io_phrase(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The class of an I/O error on a socket.
pub(crate) fn socket_class(err: &io::Error) -> Class {
    if err.kind() == io::ErrorKind::TimedOut {
        Class::Timeout
    } else {
        Class::Network
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_survives_context() {
        let err = Class::Incomplete.err("cut").context("talking to x");
        assert_eq!(classify(&err), Class::Incomplete);
        assert_eq!(format!("{err:#}"), "talking to x: cut");
        assert_eq!(classify(&anyhow::anyhow!("plain")), Class::Other);
    }

    #[test]
    fn io_phrase_is_short() {
        let err = io::Error::from_raw_os_error(111);
        assert_eq!(io_phrase(&err), "connection refused");
    }
}
