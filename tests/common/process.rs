//! The real `pulse` binary as a child process, for tests that need what an
//! in-process server cannot give: a SIGTERM, a SIGKILL, a restart.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `pulse` process on a port of its own, killed on drop.
pub struct Pulse {
    child: Child,
    pub addr: SocketAddr,
    /// Every line the process wrote to stdout (its log), so far.
    log: Arc<Mutex<Vec<String>>>,
}

impl Pulse {
    /// Starts the binary on the database file `db` with `flags` and waits
    /// for its `listening on` line (`http://` or, with TLS, `https://`).
    pub fn start(db: &str, flags: &[&str], env: &[(&str, &str)]) -> Pulse {
        // The simulator is off unless the flags say otherwise.
        let tick_rate: &[&str] = if flags.contains(&"--tick-rate") {
            &[]
        } else {
            &["--tick-rate", "0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(["--addr", "127.0.0.1:0", "--db", db])
            .args(tick_rate)
            .args(flags)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            // No site: the bundle `target/site` may hold (a release build's)
            // is not this debug binary's, and these tests need no pages.
            .env("LEPTOS_SITE_ROOT", "target/no-site")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the pulse binary starts");
        let stdout = child.stdout.take().unwrap();
        let (found, address) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        // Keep reading the log, or a full pipe would stall the server.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let after = |scheme: &str| line.split(scheme).nth(1).map(str::to_owned);
                let listening =
                    after("listening on http://").or_else(|| after("listening on https://"));
                // Logged before the address is handed over, so a test that
                // got it finds the line in `log()`.
                kept.lock().unwrap().push(line);
                if let Some(rest) = listening.as_deref() {
                    // Text or JSON: the address ends where its characters do.
                    let end = rest
                        .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
                        .unwrap_or(rest.len());
                    let _ = found.send(rest[..end].parse::<SocketAddr>().ok());
                }
            }
        });
        let Some(addr) = address.recv_timeout(Duration::from_secs(20)).ok().flatten() else {
            // Not left running behind a failed test.
            let _ = child.kill();
            let _ = child.wait();
            panic!("pulse did not say where it listens");
        };
        Pulse { child, addr, log }
    }

    /// The lines the process has logged so far.
    #[allow(dead_code)] // Not every test binary reads the log.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Kills the process at once (SIGKILL: no shutdown, no flush) and waits
    /// for it to be gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("the process can be killed");
        self.child.wait().expect("the killed process is reaped");
    }

    /// Sends `signal` (`HUP`, `TERM`, ...).
    #[allow(dead_code)] // Not every test binary signals.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
