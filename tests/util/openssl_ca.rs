//! Certificates made by openssl, for what rcgen will not write: several CNs in one subject,
//! separators and control characters in names, a single subjectAltName with a comma in it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::pki::{s, Leaf};

/// An openssl CA (ca.pem, ca.key) in a directory of its own, with a server certificate for
/// localhost and 127.0.0.1 (srv.pem, srv.key).
pub(crate) struct OpensslCa {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub server: Leaf,
}

impl OpensslCa {
    /// `None` (after a SKIP line) without openssl.
    pub(crate) fn new() -> Option<OpensslCa> {
        if !super::have("openssl") {
            return None;
        }
        let dir = super::tempdir();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=hostile names CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        let mut ca = OpensslCa {
            cert: dir.path().join("ca.pem"),
            server: Leaf {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            dir,
        };
        ca.server = ca.leaf(
            "srv",
            "/CN=localhost",
            &["DNS.1 = localhost", "IP.1 = 127.0.0.1"],
            "serverAuth",
        );
        Some(ca)
    }

    /// NAME.pem and NAME.key: a P-256 leaf with openssl's `-subj` SUBJECT (`/CN=a/CN=b`; a
    /// backslash escapes the next character) and subjectAltNames given as lines of an openssl
    /// config section (`DNS.1 = a,b` is one name with a comma); `usage` is serverAuth or
    /// clientAuth.
    pub(crate) fn leaf(&self, name: &str, subject: &str, sans: &[&str], usage: &str) -> Leaf {
        let d = self.dir.path();
        let ext = format!(
            "subjectAltName=@alt\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n\
             [alt]\n{}\n",
            sans.join("\n")
        );
        let ext_file = super::write(d, &format!("{name}.ext"), ext);
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-days",
                "30",
                "-extfile",
                s(&ext_file),
                "-out",
                &pem,
            ],
        );
        Leaf {
            cert: d.join(pem),
            key: d.join(key),
        }
    }
}

/// Run openssl in `dir`; its failure fails the test.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
