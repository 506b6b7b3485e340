//! The built binary runs on a bare Debian: it links only the C runtime that every glibc system
//! has (no fontconfig, freetype, OpenSSL or SQLite from the system).

use std::process::Command;

/// Libraries any glibc system has: the vDSO, the loader, libc, libm and libgcc_s.
const ALLOWED: &[&str] = &[
    "linux-vdso.so",
    "ld-linux",
    "libc.so",
    "libm.so",
    "libgcc_s.so",
];

#[test]
fn the_binary_links_only_the_c_runtime() {
    let bin = env!("CARGO_BIN_EXE_movierec");
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .expect("ldd runs (Debian's libc-bin)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ldd {bin} failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let linked: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // The loader and libc are always there: an empty list would mean ldd said nothing useful.
    assert!(
        linked.iter().any(|l| l.contains("libc.so")),
        "no libc in ldd's output:\n{text}"
    );
    let extra: Vec<&&str> = linked
        .iter()
        .filter(|lib| {
            let name = lib.rsplit('/').next().unwrap_or(lib);
            !ALLOWED.iter().any(|a| name.starts_with(a))
        })
        .collect();
    assert!(
        extra.is_empty(),
        "{bin} links {extra:?} beyond the C runtime:\n{text}"
    );
}
