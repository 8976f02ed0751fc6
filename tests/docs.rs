//! The documentation cannot drift from the program: every long option that `--help` lists
//! appears in the man page and the README, and so does every exit status; `lib.rs`'s module
//! map names every module, and the tests' STARTTLS protocols are those `--help` lists.

use crate::util;

use util::{have, run, Input};

fn long_options(help: &str) -> Vec<String> {
    help.split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .split(['=', '[', '<', ','])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|w| w.len() > 1)
        .collect()
}

#[test]
fn every_option_is_documented() {
    let man = std::fs::read_to_string("man/stls.1").expect("man page");
    let readme = std::fs::read_to_string("README.md").expect("README");
    // roff writes a dash in an option as \-.
    let man = man.replace("\\-", "-");
    let mut checked = 0;
    for sub in [
        &["--help"][..],
        &["connect", "--help"],
        &["listen", "--help"],
        &["inspect", "--help"],
        &["cert", "ca", "--help"],
        &["cert", "server", "--help"],
        &["cert", "client", "--help"],
        &["completions", "--help"],
    ] {
        let help = run(sub, Input::Null);
        help.expect_code(0);
        for option in long_options(&String::from_utf8_lossy(&help.stdout)) {
            let flag = format!("--{option}");
            assert!(man.contains(&flag), "man/stls.1 does not mention {flag}");
            if !["help", "version"].contains(&option.as_str()) {
                assert!(readme.contains(&flag), "README.md does not mention {flag}");
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "found only {checked} options in --help");
}

#[test]
fn every_exit_status_is_documented() {
    let man = std::fs::read_to_string("man/stls.1").expect("man page");
    let readme = std::fs::read_to_string("README.md").expect("README");
    for status in 0..=8 {
        assert!(
            man.contains(&format!(".B {status}\n")),
            "man: exit {status}"
        );
        assert!(
            readme.contains(&format!("| {status} |")),
            "README: exit {status}"
        );
    }
}

#[test]
fn a_reset_during_the_handshake_is_documented_as_3() {
    // errors.rs: reset_during_handshake_is_a_network_failure. Exit 4 is an orderly close.
    let man = std::fs::read_to_string("man/stls.1").expect("man page");
    let readme = std::fs::read_to_string("README.md").expect("README");
    let row = |n: u8| {
        readme
            .lines()
            .find(|l| l.starts_with(&format!("| {n} |")))
            .unwrap_or_default()
            .to_string()
    };
    let status = |n: u8| {
        let from = man.find(&format!(".B {n}\n")).unwrap_or_default();
        let to = man[from..].find(".TP").map_or(man.len(), |at| from + at);
        man[from..to].replace('\n', " ")
    };
    for (what, three, four) in [("README", row(3), row(4)), ("man", status(3), status(4))] {
        assert!(
            three.contains("Network") || three.contains("network"),
            "{what}: {three}"
        );
        assert!(three.contains("during the handshake"), "{what}: {three}");
        assert!(!four.contains("or reset"), "{what}: {four}");
    }
}

#[test]
fn man_page_has_the_sections_of_a_unix_manual() {
    let man = std::fs::read_to_string("man/stls.1").expect("man page");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH EXAMPLES",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(man.contains(section), "man/stls.1 has no {section}");
    }
    for see in ["openssl-s_client", "ncat", "socat", "curl"] {
        assert!(
            man.contains(&format!(".BR {see} (1)")),
            "SEE ALSO lacks {see}(1)"
        );
    }
    for word in ["SSLKEYLOGFILE", "NO_COLOR", "stls completions"] {
        assert!(man.contains(word), "man/stls.1 does not mention {word}");
    }
    // It renders without warnings, where groff is installed.
    if have("groff") {
        let out = std::process::Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z", "man/stls.1"])
            .output()
            .expect("groff");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn version_names_the_tls_library_and_provider() {
    let v = run(&["--version"], Input::Null);
    v.expect_code(0);
    let v = String::from_utf8_lossy(&v.stdout);
    let lock = std::fs::read_to_string("Cargo.lock").expect("Cargo.lock");
    let rustls = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"rustls\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .expect("rustls in Cargo.lock")
        .trim_matches('"');
    assert!(v.contains(&format!("rustls {rustls}")), "{v}");
    assert!(v.contains("aws-lc-rs"), "{v}");
}

#[test]
fn completions_for_each_shell() {
    for (shell, check) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = run(&["completions", shell], Input::Null);
        out.expect_code(0);
        let script = String::from_utf8_lossy(&out.stdout);
        for word in [
            "connect",
            "listen",
            "cert",
            // fish writes `-l pin`, the others `--pin`.
            "pin",
            "keep-open",
            "client-ca",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
        // The script at least parses in its shell, where that shell is installed.
        if have(check) {
            let dir = util::tempdir();
            let file = util::write(dir.path(), "stls.completion", out.stdout.as_slice());
            let parsed = std::process::Command::new(check)
                .arg("-n")
                .arg(&file)
                .output()
                .expect("run the shell");
            assert!(
                parsed.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&parsed.stderr)
            );
        }
    }
    run(&["completions", "tcsh"], Input::Null).expect_code(2);
}

#[test]
fn help_says_what_each_subcommands_options_are_for() {
    for sub in ["connect", "inspect"] {
        let help = run(&[sub, "--help"], Input::Null);
        help.expect_code(0);
        // Collapse the wrapping, which depends on the terminal width.
        let help = String::from_utf8_lossy(&help.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(help.contains("a client certificate"), "{sub}: --cert");
        assert!(help.contains("sha256//BASE64"), "{sub}: --pin");
    }
    let help = run(&["inspect", "--help"], Input::Null);
    let help = String::from_utf8_lossy(&help.stdout);
    // A port that starts in plain text is no use to inspect without its dialogue.
    let postgres: Vec<&str> = help.lines().filter(|l| l.contains(":5432")).collect();
    assert!(
        !postgres.is_empty(),
        "the postgres example is gone:\n{help}"
    );
    for line in postgres {
        assert!(line.contains("--starttls postgres"), "{line}");
    }
}

/// The modules under `src/` as `lib.rs`'s map names them: `net`, `trust`, `trust::roots`.
fn source_modules() -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![(std::path::PathBuf::from("src"), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("src/ is readable").path();
            let name = path
                .file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                dirs.push((path.clone(), format!("{prefix}{name}::")));
            } else if path.extension().is_some_and(|e| e == "rs") {
                match (prefix.as_str(), name) {
                    ("", "lib" | "main") => {}
                    (_, "mod") => found.push(prefix.trim_end_matches("::").to_string()),
                    _ => found.push(format!("{prefix}{name}")),
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_module_map_names_every_module() {
    let lib = std::fs::read_to_string("src/lib.rs").expect("src/lib.rs");
    let map: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let modules = source_modules();
    assert!(modules.len() > 30, "found only {modules:?} under src/");
    for module in &modules {
        assert!(
            map.contains(&format!("`{module}`")),
            "the module map in src/lib.rs does not name `{module}`"
        );
    }
    // Every `mod x;` of lib.rs is a file the map was checked against.
    for declared in lib.lines().filter_map(|l| l.strip_prefix("mod ")) {
        let name = declared.trim_end_matches(';');
        assert!(modules.iter().any(|m| m == name), "mod {name}: no file");
    }
}

#[test]
fn the_tests_cover_every_starttls_protocol_help_lists() {
    let help = run(&["connect", "--help"], Input::Null);
    help.expect_code(0);
    let help = String::from_utf8_lossy(&help.stdout);
    let option = help
        .find("--starttls <PROTO>")
        .expect("--help lists --starttls");
    let values = &help[option..];
    let start = values
        .find("[possible values: ")
        .expect("--starttls's values")
        + 18;
    let end = start + values[start..].find(']').expect("the end of the values");
    let listed: Vec<&str> = values[start..end].split(',').map(str::trim).collect();
    assert_eq!(
        listed,
        crate::starttls::PROTOS,
        "--starttls PROTO in --help"
    );
}
