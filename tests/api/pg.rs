//! A PostgreSQL server of the test's own: Debian's PostgreSQL (`scripts/test`
//! installs it), a cluster made by `initdb` in a temporary directory, the
//! server on a random loopback port, stopped when dropped. As root, the
//! server runs as the `postgres` user (PostgreSQL refuses to run as root).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct Postgres {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    bin: PathBuf,
    /// A server this test did not start: its database URL and password.
    elsewhere: Option<(String, String)>,
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]);
        c.arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// A fresh server with a `tongban` superuser (trust authentication on loopback).
    pub fn start() -> Self {
        let bin = crate::requires::postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "tongban",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .stdout(Stdio::null())
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Self {
            port: free_port(),
            dir,
            child: None,
            bin,
            elsewhere: None,
        };
        pg.run();
        pg
    }

    /// A server that runs already (the one `docs/cluster.md` sets up):
    /// queried at `url` with `password`, never started or stopped here.
    pub fn running_at(url: &str, password: &str) -> Self {
        Self {
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            bin: crate::requires::postgres_bin(),
            elsewhere: Some((url.to_owned(), password.to_owned())),
        }
    }

    fn run(&mut self) {
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        std::fs::set_permissions(
            self.dir.path().join("postgres.log"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let child = command(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off", "-c", "max_connections=100"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The connection string of the `tongban` superuser's database.
    pub fn url(&self) -> String {
        if let Some((url, _)) = &self.elsewhere {
            return url.clone();
        }
        format!("postgres://tongban@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL for `role`, with `password` if given.
    pub fn url_as(&self, role: &str, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("postgres://{role}:{p}@127.0.0.1:{}/postgres", self.port),
            None => format!("postgres://{role}@127.0.0.1:{}/postgres", self.port),
        }
    }

    /// Makes `role` log in over TCP with its password (SCRAM), as Debian's
    /// PostgreSQL does for every role, and reloads the server.
    pub fn require_password(&self, role: &str) {
        let hba = self.dir.path().join("data/pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("host all {role} 127.0.0.1/32 scram-sha-256\n{rest}"),
        )
        .unwrap();
        self.psql("SELECT pg_reload_conf()");
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: fast shutdown (open transactions are rolled back).
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Runs SQL through psql, returning what it printed (unaligned, no headers).
    pub fn psql(&self, sql: &str) -> String {
        match self.try_psql(sql) {
            Ok(out) => out,
            Err(e) => panic!("psql {sql}: {e}"),
        }
    }

    /// Runs `sql` in psql (stopping at the first error): its output, or its
    /// error message.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_session(&[sql])
    }

    /// Runs each command as its own message, in one session, stopping at
    /// the first error: the output, or the error message.
    pub fn try_session(&self, commands: &[&str]) -> Result<String, String> {
        let mut psql = Command::new(self.bin.join("psql"));
        if let Some((_, password)) = &self.elsewhere {
            psql.env("PGPASSWORD", password);
        }
        let out = psql
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(self.url())
            .args(commands.iter().flat_map(|c| ["-c", c]))
            .output()
            .expect("psql runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: immediate shutdown, the backends go with the postmaster.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// A Redis server of the test's own (Debian's redis-server), nothing
/// persisted, on a random loopback port; stopped when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.run();
        r
    }

    fn run(&mut self) {
        crate::requires::program("redis-server", "redis-server");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
