//! A private `redis-server` for tests: on a free port of 127.0.0.1, with no
//! automatic persistence (`--save ''`, no append-only file) in a temporary
//! folder of its own, a child of the test process that dies with it
//! (`setpriv --pdeathsig`), stopped on drop. It can be stopped and started
//! again on the same port, for tests of an outage: empty, or from a
//! snapshot taken earlier (`save`), as a restore from a backup would.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A Redis server of the test's own.
pub struct Redis {
    port: u16,
    server: Mutex<Option<Child>>,
    /// Its working folder: where `save` writes the snapshot.
    dir: std::path::PathBuf,
}

#[allow(dead_code)]
impl Redis {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("pulse-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for redis");
        let redis = Redis {
            port,
            server: Mutex::new(None),
            dir,
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and waits for it to be gone.
    pub fn stop(&self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `redis-cli` against this server; answers what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8(out.stdout).expect("redis-cli prints text")
    }

    /// Writes a snapshot of what the server holds now (`SAVE`).
    pub fn save(&self) {
        let out = self.cli(&["SAVE"]);
        assert!(out.contains("OK"), "{out:?}");
    }

    /// Starts the server again from the last `save` (as a restore from a
    /// backup: what changed since is gone).
    pub fn restart_from_snapshot(&self) {
        assert!(self.dir.join("dump.rdb").exists(), "no snapshot saved");
        self.start_server();
    }

    /// Starts the server (again) on the same port, empty, and waits until
    /// it accepts connections.
    pub fn restart(&self) {
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        self.start_server();
    }

    fn start_server(&self) {
        self.stop();
        // The death signal is set by setpriv, which then execs the server:
        // it is killed with this process however this process ends.
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "SIGKILL", "--", "redis-server"])
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            // `DEBUG SLEEP` stalls it for the fault tests (local connections only).
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server starts (scripts/setup.sh installs it)");
        *self.server.lock().unwrap() = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
