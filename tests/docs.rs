//! The documentation cannot drift from the program: every long option that `--help` lists
//! appears in the man page and the README, and so does every exit status.

mod util;

use util::{run, Input};

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
        &["cert", "server", "--help"],
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
    for status in 0..=7 {
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
