//! Watching a long-running stls: `--status` (`/healthz`, `/readyz`, `/metrics`, scraped by a
//! real Prometheus and checked by promtool) and `--log-format json` (every line parsed by jq,
//! each documented key held).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::pki::{s, KeyType, Pki, VALID};
use crate::util::{
    connect, free_port, have, random_bytes, stls, tempdir, write, Input, Listener, Proc,
};

/// The port of the `status on 127.0.0.1:PORT` line (said before `listening on`).
fn status_port(l: &Listener) -> u16 {
    let text = l.proc.stderr_text();
    let line = text
        .lines()
        .find(|l| l.contains("status on "))
        .unwrap_or_else(|| panic!("no status line in {text}"));
    let line = line.trim_end_matches(['"', '}']);
    let port = line
        .split("status on ")
        .nth(1)
        .and_then(|a| a.split(['"', ',']).next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok());
    port.unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// `GET path` on `port`: the status code and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("status socket");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A metric's value as `/metrics` gives it (`name{labels}` exactly).
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `/metrics` once `name` is `value` (a connection is counted as the server sees it end,
/// which may be after the client has).
fn wait_metric(port: u16, name: &str, value: f64) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = get(port, "/metrics");
        if metric(&body, name) == Some(value) {
            return body;
        }
        assert!(Instant::now() < until, "{name} never {value}:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `stls listen -k 127.0.0.1:0 --cert … --status 127.0.0.1:0 -e cat EXTRA…`.
fn echo_with_status(pki: &Pki, extra: &[&str]) -> Listener {
    let mut args = vec![
        "-k",
        "--cert",
        s(&pki.server.cert),
        "--key",
        s(&pki.server.key),
        "--status",
        "127.0.0.1:0",
        "-e",
        "cat",
    ];
    args.extend_from_slice(extra);
    Listener::start(&args, Input::Null)
}

/// `data` through the echo service, verified: what comes back.
fn echo(pki: &Pki, port: u16, data: Vec<u8>) -> Vec<u8> {
    let done = connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert)],
        Input::Bytes(data),
    );
    done.expect_code(0);
    done.stdout
}

#[test]
fn status_answers_health_readiness_and_metrics() {
    let pki = Pki::new();
    let l = echo_with_status(&pki, &[]);
    let port = status_port(&l);
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(port, "/readyz"), (200, "ready\n".to_string()));
    assert_eq!(get(port, "/").0, 404);
    assert_eq!(get(port, "/metricsx").0, 404);
    let (code, body) = get(port, "/metrics");
    assert_eq!(code, 200);
    // Every outcome is there from the start.
    for outcome in [
        "ok",
        "reset",
        "handshake",
        "verify",
        "timeout",
        "incomplete",
    ] {
        let name = format!("stls_connections_total{{outcome=\"{outcome}\"}}");
        assert_eq!(metric(&body, &name), Some(0.0), "{name} in\n{body}");
    }
    assert_eq!(metric(&body, "stls_connections_open"), Some(0.0));
    assert!(body.contains("stls_build_info{version=\""), "{body}");
    assert!(body.contains("rustls=\"0.23."), "{body}");
    // The served certificate, by its name.
    let expiry = metric(
        &body,
        "stls_certificate_expiry_timestamp_seconds{name=\"localhost\"}",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(matches!(expiry, Some(t) if t > now), "{body}");
    for line in [
        "stls_reloads_total{result=\"ok\"} 0",
        "stls_reloads_total{result=\"failed\"} 0",
        "stls_handshake_seconds_count 0",
    ] {
        assert!(body.contains(line), "{line} in\n{body}");
    }

    // Two connections and a failed handshake are counted.
    for _ in 0..2 {
        assert_eq!(echo(&pki, l.port, b"hello\n".to_vec()), b"hello\n");
    }
    connect(&l.addr(), &["--pin", &"AA".repeat(32)], Input::Null).expect_code(5);
    let body = wait_metric(port, "stls_connections_total{outcome=\"handshake\"}", 1.0);
    assert_eq!(
        metric(&body, "stls_connections_total{outcome=\"ok\"}"),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "stls_connections_total{outcome=\"handshake\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(metric(&body, "stls_handshake_seconds_count"), Some(2.0));
    assert_eq!(
        metric(&body, "stls_bytes_total{direction=\"in\"}"),
        Some(12.0)
    );
    assert_eq!(
        metric(&body, "stls_bytes_total{direction=\"out\"}"),
        Some(12.0)
    );

    // promtool reads the exposition as Prometheus does.
    if have("promtool") {
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        check
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = check.wait_with_output().expect("promtool ran");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    l.stop().expect_code(143);
}

#[test]
fn status_is_for_what_runs_long() {
    let done = crate::util::run(
        &["listen", "127.0.0.1:0", "--status", "127.0.0.1:0"],
        Input::Null,
    );
    done.expect_code(2)
        .expect_stderr("--status is for a listener that keeps running: give -k");
    let done = crate::util::run(
        &["connect", "localhost:1", "--status", "127.0.0.1:0"],
        Input::Null,
    );
    done.expect_code(2).expect_stderr("--from");
    // The error that ends a run is a JSON line too.
    let done = crate::util::run(
        &[
            "listen",
            "127.0.0.1:0",
            "--status",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        Input::Null,
    );
    done.expect_code(2);
    let lines = json_lines(&done.stderr);
    common_keys(&lines);
    assert_eq!(lines.len(), 1, "{}", done.stderr);
    assert_eq!(lines[0]["event"], "error");
    assert_eq!(lines[0]["level"], "error");
    assert!(lines[0]["msg"]
        .as_str()
        .is_some_and(|m| m.starts_with("--status is for")));
}

#[test]
fn a_hostile_status_client_holds_up_neither_the_relay_nor_other_status_clients() {
    let pki = Pki::new();
    let l = echo_with_status(&pki, &[]);
    let port = status_port(&l);
    // More silent clients than are served at once, and one whose head never ends.
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let mut endless = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    endless
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let flood = std::thread::spawn(move || {
        let _ = endless.write_all(b"GET /metrics HTTP/1.1\r\n");
        let header = b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let until = Instant::now() + Duration::from_secs(20);
        // Until stls lets it go (after 8 KiB: 431, then closed).
        while Instant::now() < until && endless.write_all(header).is_ok() {}
        let mut answer = Vec::new();
        endless
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = endless.read_to_end(&mut answer);
        answer
    });
    // A transfer goes on meanwhile, byte for byte, and so does another status client.
    let data = random_bytes(2 << 20, 29);
    assert!(echo(&pki, l.port, data.clone()) == data, "echo differs");
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_string()));
    let answer = flood.join().expect("flood thread");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(silent);
    assert_eq!(get(port, "/readyz").0, 200);
    l.stop().expect_code(143);
}

#[test]
fn prometheus_scrapes_the_connection_counter() {
    if !have("prometheus") {
        return;
    }
    let pki = Pki::new();
    let l = echo_with_status(&pki, &[]);
    let port = status_port(&l);
    for _ in 0..3 {
        assert_eq!(echo(&pki, l.port, b"x".to_vec()), b"x");
    }
    let dir = tempdir();
    let config = write(
        dir.path(),
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: stls\n    static_configs:\n      \
             - targets: ['127.0.0.1:{port}']\n"
        ),
    );
    let web = free_port();
    let data = dir.path().join("data");
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", s(&config)))
        .arg(format!("--storage.tsdb.path={}", s(&data)))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"));
    let _prometheus = Proc::spawn(&mut cmd, Input::Null);
    // Prometheus starts, scrapes, and its API answers: at most a minute.
    let query = "/api/v1/query?query=stls_connections_total%7Boutcome%3D%22ok%22%7D";
    let until = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let answer = TcpStream::connect(("127.0.0.1", web))
            .ok()
            .map(|_| get(web, query));
        let found = answer.as_ref().and_then(|(code, body)| {
            let v: Value = serde_json::from_str(body).ok()?;
            let result = v["data"]["result"].as_array()?.first()?.clone();
            (*code == 200).then_some(result)
        });
        if let Some(result) = found {
            break result;
        }
        assert!(
            Instant::now() < until,
            "Prometheus never had stls_connections_total: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(value["metric"]["outcome"], "ok", "{value}");
    assert_eq!(value["metric"]["job"], "stls", "{value}");
    assert_eq!(value["value"][1], "3", "{value}");
    l.stop().expect_code(143);
}

/// The JSON lines of `text`, each also parsed by jq when it is there.
fn json_lines(text: &str) -> Vec<Value> {
    if have("jq") {
        let mut jq = Command::new("jq")
            .args(["-c", "."])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("jq");
        jq.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = jq.wait_with_output().expect("jq ran");
        assert!(
            out.status.success(),
            "jq: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            text.lines().count(),
            "one object per line:\n{text}"
        );
    }
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// A `listen -k -v --log-format json` run: a client without a certificate, a verified one
/// with its certificate, SNI and ALPN, one dropped in its handshake for the next
/// (`--max-handshakes 1`), which is open when SIGTERM ends the run; its stderr's objects.
fn logged_run(pki: &Pki) -> Vec<Value> {
    let alice = pki.ca.client("alice", "alice", KeyType::P256, VALID);
    let mut cmd = stls();
    cmd.args(["listen", "-k", "127.0.0.1:0", "-v", "--log-format", "json"])
        .args(["--cert", s(&pki.server.cert), "--key", s(&pki.server.key)])
        .args(["--client-ca-optional", s(&pki.ca.cert), "--alpn", "echo"])
        .args(["--max-handshakes", "1", "-e", "cat"]);
    let proc = Proc::spawn(&mut cmd, Input::Null);
    let line = proc.wait_line("listening on ");
    let v: Value = serde_json::from_str(&line).expect("a JSON line");
    let port: u16 = v["msg"]
        .as_str()
        .and_then(|m| m.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    let ok = connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert), "--alpn", "echo"],
        Input::Bytes(b"ping\n".to_vec()),
    );
    ok.expect_code(0);
    let ok = connect(
        &format!("localhost:{port}"),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--alpn",
            "echo",
            "--cert",
            s(&alice.cert),
            "--key",
            s(&alice.key),
        ],
        Input::Bytes(b"hello\n".to_vec()),
    );
    ok.expect_code(0);
    assert_eq!(ok.stdout, b"hello\n");
    let first = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let second = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    proc.wait_line("\"event\":\"refused\"");
    proc.signal(libc::SIGTERM);
    let done = proc.finish();
    drop((first, second));
    done.expect_code(143);
    json_lines(&done.stderr)
}

/// What every JSON line has: `ts` (RFC 3339, UTC), `level`, `event` and `msg`.
fn common_keys(lines: &[Value]) {
    for v in lines {
        let ts = v["ts"].as_str().expect("ts");
        // 2026-01-31T23:59:59.123Z
        assert!(
            ts.len() == 24 && &ts[10..11] == "T" && ts.ends_with('Z'),
            "{ts}"
        );
        assert!(
            ["error", "warn", "info", "debug"].contains(&v["level"].as_str().unwrap_or("")),
            "{v}"
        );
        assert!(v["event"].is_string() && v["msg"].is_string(), "{v}");
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_every_documented_key() {
    let pki = Pki::new();
    let lines = logged_run(&pki);
    common_keys(&lines);
    let events: Vec<&str> = lines.iter().filter_map(|v| v["event"].as_str()).collect();
    for event in [
        "listening",
        "accepted",
        "established",
        "closed",
        "refused",
        "message",
    ] {
        assert!(events.contains(&event), "no {event} in {events:?}");
    }
    // -v's certificate of several lines is one object.
    assert!(
        lines.iter().any(|v| v["event"] == "message"
            && v["msg"]
                .as_str()
                .is_some_and(|m| m.contains("client certificate: CN=alice\n  names:  alice\n"))),
        "{lines:?}"
    );
    // Exactly one closed or refused line per connection: four connections.
    let ends: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "closed" || v["event"] == "refused")
        .collect();
    assert_eq!(ends.len(), 4, "{ends:?}");
    for end in &ends {
        for key in [
            "peer",
            "sni",
            "alpn",
            "version",
            "cipher",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "outcome",
            "status",
            "reason",
        ] {
            assert!(end.get(key).is_some(), "no {key} in {end}");
        }
    }
    // The verified client's connection: everything known of it.
    let alices = ends
        .iter()
        .find(|v| v["client"].is_object())
        .expect("a line with the client certificate");
    assert_eq!(alices["event"], "closed");
    assert_eq!(alices["level"], "info");
    assert_eq!(alices["client"]["cn"], "alice");
    assert_eq!(alices["client"]["sans"], serde_json::json!(["DNS:alice"]));
    assert_eq!(
        alices["client"]["sha256"].as_str().map(str::len),
        Some(95),
        "{alices}"
    );
    assert_eq!(alices["sni"], "localhost");
    assert_eq!(alices["alpn"], "echo");
    assert_eq!(alices["version"], "TLSv1.3");
    assert!(alices["cipher"]
        .as_str()
        .is_some_and(|c| c.starts_with("TLS13_")));
    assert!(alices["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert_eq!(alices["bytes_in"], 6);
    assert_eq!(alices["bytes_out"], 6);
    assert!(alices["duration_ms"].is_u64());
    assert_eq!(alices["outcome"], "ok");
    assert_eq!(alices["status"], 0);
    assert_eq!(alices["reason"], Value::Null);
    // The client without a certificate has no `client`.
    assert_eq!(
        ends.iter()
            .filter(|v| v["outcome"] == "ok" && v["client"].is_null())
            .count(),
        1
    );
    // The one dropped in its handshake.
    let refused = ends
        .iter()
        .find(|v| v["event"] == "refused")
        .expect("refused");
    assert_eq!(refused["outcome"], "handshake");
    assert_eq!(refused["status"], 4);
    assert_eq!(refused["level"], "warn");
    assert_eq!(refused["version"], Value::Null);
    assert!(refused["reason"]
        .as_str()
        .is_some_and(|r| r.contains("--max-handshakes")));
    // The run's end: the one still in its handshake is reset.
    assert!(
        ends.iter()
            .any(|v| v["event"] == "closed" && v["outcome"] == "handshake" && v["status"] == 3),
        "{ends:?}"
    );
}

#[test]
fn connect_from_serves_status_and_logs_json() {
    let pki = Pki::new();
    let l = echo_with_status(&pki, &[]);
    let mut cmd = stls();
    cmd.args(["connect", &format!("localhost:{}", l.port)])
        .args(["--cacert", s(&pki.ca.cert), "--from", "127.0.0.1:0"])
        .args(["--status", "127.0.0.1:0", "--log-format", "json"]);
    let from = Proc::spawn(&mut cmd, Input::Null);
    let line = from.wait_line("listening on ");
    let v: Value = serde_json::from_str(&line).expect("a JSON line");
    let port: u16 = v["msg"]
        .as_str()
        .and_then(|m| m.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    let text = from.stderr_text();
    let status: u16 = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| {
            v["msg"]
                .as_str()?
                .strip_prefix("status on 127.0.0.1:")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no status line in {text}"));
    assert_eq!(get(status, "/readyz"), (200, "ready\n".to_string()));
    let mut plain = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    plain.write_all(b"through\n").unwrap();
    plain.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = plain.read_to_end(&mut back);
    assert_eq!(back, b"through\n");
    // Its one closed line.
    let closed: Value =
        serde_json::from_str(&from.wait_line("\"event\":\"closed\"")).expect("JSON");
    assert_eq!(closed["outcome"], "ok", "{closed}");
    assert_eq!(closed["version"], "TLSv1.3", "{closed}");
    assert_eq!(closed["bytes_out"], 8, "{closed}");
    let (_, body) = get(status, "/metrics");
    assert_eq!(
        metric(&body, "stls_connections_total{outcome=\"ok\"}"),
        Some(1.0),
        "{body}"
    );
    from.signal(libc::SIGTERM);
    from.finish().expect_code(143);
    l.stop().expect_code(143);
}

#[test]
fn quiet_json_still_says_how_each_connection_ended_and_status_takes_a_unix_socket() {
    let pki = Pki::new();
    let dir = tempdir();
    let (tls, status) = (dir.path().join("tls.sock"), dir.path().join("status.sock"));
    let mut cmd = stls();
    cmd.args(["listen", "-k", &format!("unix:{}", s(&tls))])
        .args(["--status", &format!("unix:{}", s(&status))])
        .args(["-q", "--log-format", "json", "-e", "cat"])
        .args(["--cert", s(&pki.server.cert), "--key", s(&pki.server.key)]);
    let proc = Proc::spawn(&mut cmd, Input::Null);
    // -q: nothing says it listens; the socket files do.
    let until = Instant::now() + Duration::from_secs(30);
    while !(tls.exists() && status.exists()) {
        assert!(Instant::now() < until, "no sockets: {}", proc.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = connect(
        &format!("unix:{}", s(&tls)),
        &["--cacert", s(&pki.ca.cert), "--servername", "localhost"],
        Input::Bytes(b"quiet\n".to_vec()),
    );
    done.expect_code(0);
    assert_eq!(done.stdout, b"quiet\n");
    let closed: Value =
        serde_json::from_str(&proc.wait_line("\"event\":\"closed\"")).expect("JSON");
    assert_eq!(closed["outcome"], "ok", "{closed}");
    assert_eq!(closed["sni"], "localhost", "{closed}");
    if have("curl") {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--unix-socket", s(&status)])
            .arg("http://localhost/healthz")
            .output()
            .expect("curl ran");
        assert_eq!(
            out.stdout,
            b"ok\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    proc.signal(libc::SIGTERM);
    let done = proc.finish();
    done.expect_code(143);
    let lines = json_lines(&done.stderr);
    common_keys(&lines);
    let events: Vec<&str> = lines.iter().filter_map(|v| v["event"].as_str()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "closed").count(),
        1,
        "{events:?}"
    );
    assert!(!events.contains(&"listening"), "{events:?}");
    // Both socket files go with the run.
    assert!(!tls.exists() && !status.exists());
}
