//! What some tests need from the machine beyond the Rust toolchain, checked
//! first: a missing part fails the test at once with one message naming the
//! Debian package and `scripts/test`, which installs it. Tests that need
//! none of these never call here and run without them.

use std::path::{Path, PathBuf};

/// The message for a missing part.
fn missing(what: &str, package: &str) -> String {
    format!(
        "this test needs {what}, which is not installed: run scripts/test (it installs the \
         Debian package {package} and everything else the tests use), or apt-get install {package}"
    )
}

/// Directories on `PATH`.
fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// A PostgreSQL server's bin directory: one on `PATH` holding `postgres`,
/// `initdb`, `pg_isready` and `psql`, else the newest of Debian's `ROOT/*/bin` (Debian keeps the
/// server off `PATH`). `ROOT` is `/usr/lib/postgresql`, or
/// `TONGBAN_TEST_PG_ROOT` (for the check that shows the message).
pub fn postgres_bin() -> PathBuf {
    let root = std::env::var_os("TONGBAN_TEST_PG_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql"));
    find_postgres(&path_dirs(), &root).unwrap_or_else(|message| panic!("{message}"))
}

fn find_postgres(path: &[PathBuf], root: &Path) -> Result<PathBuf, String> {
    let server = |dir: &Path| {
        ["postgres", "initdb", "pg_isready", "psql"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Some(dir) = path.iter().find(|d| server(d)) {
        return Ok(dir.clone());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        missing(
            "a PostgreSQL server (postgres, initdb, pg_isready, psql)",
            "postgresql",
        )
    })
}

/// A program on `PATH`, from the named Debian package.
pub fn program(name: &str, package: &str) {
    if !path_dirs().iter().any(|d| d.join(name).is_file()) {
        panic!("{}", missing(&format!("the program {name}"), package));
    }
}

/// nginx with its stream module (TLS passthrough in front of the nodes).
pub fn nginx_with_stream() {
    program("nginx", "nginx-light");
    if !Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").is_file() {
        panic!(
            "{}",
            missing("nginx's stream module", "libnginx-mod-stream")
        );
    }
}

#[test]
fn a_missing_postgresql_is_named_with_its_package_and_the_test_script() {
    let empty = tempfile::tempdir().unwrap();
    let message = find_postgres(&[empty.path().to_path_buf()], &empty.path().join("none"))
        .expect_err("no PostgreSQL anywhere");
    assert!(message.contains("postgresql"), "{message}");
    assert!(message.contains("scripts/test"), "{message}");
    assert!(message.contains("apt-get install postgresql"), "{message}");

    // And one that is there is found, on PATH first.
    let bin = empty.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for program in ["postgres", "initdb", "pg_isready", "psql"] {
        std::fs::write(bin.join(program), "").unwrap();
    }
    assert_eq!(
        find_postgres(std::slice::from_ref(&bin), &empty.path().join("none")),
        Ok(bin)
    );
}
