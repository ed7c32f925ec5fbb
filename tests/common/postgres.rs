//! Throwaway PostgreSQL clusters for tests: `initdb` into a temporary
//! directory, a `postgres` server on a free port of 127.0.0.1, databases made
//! on demand, and nothing left behind. Std only, so that both the integration
//! tests (`mod postgres;` in `tests/common`) and the library's unit tests
//! (`#[path = ...]`) can include it.
//!
//! The server is a direct child of the test process (not `pg_ctl`, which
//! daemonizes) started through `setpriv --pdeathsig SIGQUIT`, so it shuts down
//! at once when the test process ends, however it ends: a [`shared`] cluster
//! lives in a static and is never dropped. PostgreSQL refuses to run as root,
//! so as root `initdb` and `postgres` run as the `postgres` user.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to accept connections, and to shut down.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(50);
/// The server's stdout and stderr, inside its data directory.
const LOG: &str = "server.log";

/// A private PostgreSQL cluster on a free port of 127.0.0.1, stopped and its
/// directory removed on drop.
pub struct Cluster {
    dir: TempDir,
    port: u16,
    /// The postmaster while it runs; `None` after [`Cluster::stop`].
    server: Mutex<Option<Child>>,
}

#[allow(dead_code)]
impl Cluster {
    /// `initdb` into a fresh temporary directory, starts the server and waits
    /// until it accepts connections (about 3 s). Panics naming the command
    /// and its output if PostgreSQL is missing or fails.
    pub fn start() -> Cluster {
        // Removed again (by its drop) if anything below panics.
        let dir = TempDir::new();
        let mut initdb = server_command("initdb", dir.path());
        initdb
            .arg("-D")
            .arg(dir.path())
            .args(["--auth=trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"]);
        run(initdb);
        // The free port is released before the server binds it, so another
        // process can take it in between: then try another one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            match launch(dir.path(), port) {
                Ok(child) => {
                    return Cluster {
                        dir,
                        port,
                        server: Mutex::new(Some(child)),
                    }
                }
                Err(failure) if failure.contains("Address already in use") && attempt < 3 => {}
                Err(failure) => panic!("{failure}"),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database with a fresh name (`pulse_test_<n>`) and returns
    /// its url.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("pulse_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Stops the server (fast shutdown: sessions are disconnected, then a
    /// checkpoint) and waits for it to exit; the data stays. Does nothing if
    /// it is already stopped. Not for [`shared`]: other tests use it.
    pub fn stop(&self) {
        if let Some(mut child) = self.server().take() {
            halt(&mut child, "INT");
        }
    }

    /// Starts the server again on the same port and data, stopping it first
    /// if it runs, and waits until it accepts connections. Not for
    /// [`shared`] either.
    pub fn restart(&self) {
        let mut server = self.server();
        if let Some(mut child) = server.take() {
            halt(&mut child, "INT");
        }
        let child =
            launch(self.dir.path(), self.port).unwrap_or_else(|failure| panic!("{failure}"));
        *server = Some(child);
    }

    /// Runs `sql` with `psql` in `database`, panicking with its stderr if it
    /// fails; returns what it printed.
    fn psql(&self, database: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let mut psql = Command::new(install().bin.join("psql"));
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(["-d", database, "-c", sql]);
        String::from_utf8_lossy(&run(psql).stdout).into_owned()
    }

    /// The server slot, usable after a test panicked while holding it.
    fn server(&self) -> MutexGuard<'_, Option<Child>> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Cluster {
    /// Immediate shutdown: the data is thrown away anyway. The directory goes
    /// with `self.dir`, dropped right after.
    fn drop(&mut self) {
        let server = self
            .server
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mut child) = server.take() {
            halt(&mut child, "QUIT");
        }
    }
}

/// One cluster per test process, started on first use and never dropped: its
/// server dies with the process (its directory is removed by the next test
/// process that starts a cluster). Give each test its own database with
/// [`Cluster::create_database`].
#[allow(dead_code)]
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(Cluster::start)
}

/// Starts the server on `dir` and `port` and waits until it accepts
/// connections. On failure the message names the command and holds what it
/// logged, and no server is left running.
fn launch(dir: &Path, port: u16) -> Result<Child, String> {
    let log_path = dir.join(LOG);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
    // A restart appends: a failure shows only this run's lines.
    let logged_before = log.metadata().map(|meta| meta.len()).unwrap_or(0);
    let mut postgres = server_command("postgres", dir);
    postgres
        .arg("-D")
        .arg(dir)
        .args(["-p", &port.to_string()])
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log file can be shared"))
        .stderr(log);
    let command = format!("{postgres:?}");
    let mut child =
        spawn_long_lived(postgres).unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the server can be waited for") {
            let log = read_from(&log_path, logged_before);
            return Err(format!(
                "{command} exited ({status}) before accepting connections:\n{log}"
            ));
        }
        if accepts_connections(dir, port) {
            return Ok(child);
        }
        if started.elapsed() > PATIENCE {
            halt(&mut child, "QUIT");
            let log = read_from(&log_path, logged_before);
            return Err(format!(
                "{command} did not accept connections within {PATIENCE:?}:\n{log}"
            ));
        }
        thread::sleep(POLL);
    }
}

/// Whether our server (the one whose Unix socket is in `dir`: not another
/// that may hold the TCP port) accepts connections on `port` (not only
/// listens: it refuses them while it starts up or recovers).
fn accepts_connections(dir: &Path, port: u16) -> bool {
    Command::new(install().bin.join("pg_isready"))
        .args(["-q", "-t", "1", "-p", &port.to_string()])
        .arg("-h")
        .arg(dir)
        .args(["-U", "postgres", "-d", "postgres"])
        .status()
        .is_ok_and(|status| status.success())
}

/// Sends SIG`signal` (`INT`: fast shutdown, `QUIT`: immediate) and waits for
/// the server to exit; SIGKILL if it has not within [`PATIENCE`].
fn halt(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status();
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Spawns `command` from one thread that lives as long as the process, so
/// that a parent-death signal fires when the process ends and not before.
///
/// `PR_SET_PDEATHSIG` (what `setpriv --pdeathsig` sets) fires when the
/// *thread* that spawned the child exits, and the test harness runs each test
/// on a thread of its own: a server spawned by a test's thread would die with
/// that test, even while a static [`shared`] cluster, or a cluster handed to
/// another thread, still needs it. All spawns, first starts and restarts, go
/// to this thread over a channel; the channel's sender is in a static, so the
/// thread's loop never ends. `Child` handles work from any thread, since the
/// threads of a process may wait for each other's children.
fn spawn_long_lived(command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("postgres-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        requests
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((command, reply))
        .expect("the spawner thread runs");
    answer.recv().expect("the spawner thread answers")
}

/// The PostgreSQL installation and who runs its server.
struct Install {
    /// The directory of `initdb`, `postgres`, `pg_isready` and `psql`.
    bin: PathBuf,
    /// As root: the `postgres` user's uid and gid, to own the data directory
    /// and run the server.
    run_as: Option<(u32, u32)>,
}

fn install() -> &'static Install {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    INSTALL.get_or_init(|| Install {
        bin: bin_dir(),
        run_as: (effective_uid() == 0).then(|| (id("-u"), id("-g"))),
    })
}

/// The highest version under `/usr/lib/postgresql/*/bin` (Debian's layout),
/// else what `pg_config --bindir` says.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let why = match Command::new("pg_config").arg("--bindir").output() {
        Ok(output) if output.status.success() => {
            let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            if bin.join("initdb").is_file() {
                return bin;
            }
            format!(
                "`pg_config --bindir` says {}, which has no initdb",
                bin.display()
            )
        }
        Ok(output) => format!(
            "`pg_config --bindir` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => format!("`pg_config --bindir`: {e}"),
    };
    panic!(
        "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb, and {why}. \
         scripts/setup.sh installs it (apt-get install postgresql)"
    );
}

/// The effective uid of this process, from `/proc/self/status`.
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        .expect("/proc/self/status has a Uid line")
}

/// `id FLAG postgres`: the `postgres` user's uid (`-u`) or gid (`-g`).
fn id(flag: &str) -> u32 {
    let mut id = Command::new("id");
    id.args([flag, "postgres"]);
    let command = format!("{id:?}");
    let output = run(id);
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{command} printed no number: {e}"))
}

/// `program` from the PostgreSQL bin directory, run in `dir`: through
/// `setpriv` as the `postgres` user when we are root, and for the server with
/// SIGQUIT (immediate shutdown) as its parent-death signal. `setpriv` sets
/// that signal after switching the user, which would clear it otherwise.
/// `LC_ALL=C`, so what the server logs is English whatever the environment.
fn server_command(program: &str, dir: &Path) -> Command {
    let mut flags = Vec::new();
    if install().run_as.is_some() {
        flags.extend(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
    }
    if program == "postgres" {
        flags.extend(["--pdeathsig", "SIGQUIT"]);
    }
    let program = install().bin.join(program);
    let mut command = if flags.is_empty() {
        Command::new(program)
    } else {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(flags).arg("--").arg(program);
        setpriv
    };
    // The `postgres` user may not be allowed into our working directory.
    command.current_dir(dir).env("LC_ALL", "C");
    command
}

/// Runs `command` to its end, panicking with its stderr unless it succeeds.
fn run(mut command: Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{command:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    output
}

/// A free port of 127.0.0.1 (free when this returns, that is).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// What the file at `path` holds from byte `offset` on (for error messages).
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("({} unreadable: {e})", path.display()),
    }
}

/// A directory `pulse-pg-<pid>-<n>` in the temporary folder, mode 0700 and
/// owned by whoever runs the server, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static SWEEP: Once = Once::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        SWEEP.call_once(sweep_leftovers);
        let name = format!(
            "pulse-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        if let Some((uid, gid)) = install().run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("cannot chown {} to postgres: {e}", path.display()));
        }
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes the directories of test processes that are gone (a [`shared`]
/// cluster's is never dropped), and any with this process's pid (left by an
/// earlier process with the same pid). Directories of live processes stay.
fn sweep_leftovers() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("pulse-pg-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
