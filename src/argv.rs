//! Hiding proxy passwords from other users: `ps` and `/proc/PID/cmdline` show the process's
//! own argument strings for as long as it runs, so once the command line is parsed the
//! `user:pass` of each `--proxy` URL is overwritten there, as curl does for `-u`.
//!
//! Rust's `std::env::args` hands out copies; the strings the kernel shows are reached through
//! the `argv` that glibc passes to the functions in `.init_array`, recorded here.

use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

static ARGC: AtomicUsize = AtomicUsize::new(0);
static ARGV: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Called by glibc before `main` with the process's arguments, as std itself records them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // link_section: how a function is put in .init_array
#[used]
#[link_section = ".init_array"]
static RECORD_ARGV: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = record;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn record(argc: c_int, argv: *mut *mut c_char, _envp: *mut *mut c_char) {
    ARGC.store(usize::try_from(argc).unwrap_or(0), Ordering::Relaxed);
    ARGV.store(argv, Ordering::Relaxed);
}

/// Overwrite with `*` the userinfo (`user:pass`) of each of these `--proxy` values wherever
/// an argument is that value (`--proxy URL`) or `--proxy=` and that value. Nothing else
/// changes: lengths stay, so the other arguments are shown as typed.
pub(crate) fn hide_proxy_credentials(values: &[String]) {
    let hidden: Vec<(&[u8], std::ops::Range<usize>)> = values
        .iter()
        .filter_map(|v| crate::proxy::userinfo_span(v).map(|span| (v.as_bytes(), span)))
        .collect();
    if hidden.is_empty() {
        return;
    }
    edit_in_place(|arg| {
        for (value, span) in &hidden {
            let start = if arg == *value {
                0
            } else if arg.strip_prefix(b"--proxy=") == Some(value) {
                "--proxy=".len()
            } else {
                continue;
            };
            arg[start + span.start..start + span.end].fill(b'*');
        }
    });
}

/// Call `edit` on the bytes of each argument the kernel shows, in place.
#[allow(unsafe_code)] // the argument strings are C memory: no safe way reaches them
fn edit_in_place(mut edit: impl FnMut(&mut [u8])) {
    let argc = ARGC.load(Ordering::Relaxed);
    let argv = ARGV.load(Ordering::Relaxed);
    if argv.is_null() {
        return; // not recorded (not glibc): the arguments stay as they are
    }
    for i in 0..argc {
        // SAFETY: `argv` is what glibc passed to .init_array functions: `argc` pointers to
        // NUL-terminated strings in the process's own writable memory (the stack the kernel
        // set up), valid for its whole life. Nothing else holds a reference to them: std
        // copies them when `std::env::args` is called, which clap did before this and stls
        // does not do again. `edit` gets exactly the bytes before the NUL and cannot change
        // the length.
        unsafe {
            let arg = *argv.add(i);
            if arg.is_null() {
                break;
            }
            let len = libc::strlen(arg);
            edit(std::slice::from_raw_parts_mut(arg.cast::<u8>(), len));
        }
    }
}
