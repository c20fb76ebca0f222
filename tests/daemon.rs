//! The daemon end to end: `greenwave run` on a controllers directory, a
//! SIGHUP reload rejected (every error logged, plans kept) and one accepted,
//! then SIGTERM driving every intersection to flash before exit.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Lines of a child's stream, on a thread.
pub(crate) fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// Wait (bounded) for a line containing `needle`; every line read goes to
/// `seen`.
pub(crate) fn expect_line(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    within: Duration,
    seen: &mut Vec<String>,
) -> String {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(l.clone());
            if l.contains(needle) {
                return l;
            }
        }
    }
    panic!("no line with {needle:?} within {within:?}; saw:\n{}", seen.join("\n"));
}

/// Wait (bounded) for a child to exit.
pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(Instant::now() < deadline, "process did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `greenwave run` as a child process, its log lines read as they come
/// (killed when dropped).
pub(crate) struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    /// `greenwave run --no-view --grpc-listen 127.0.0.1:0` plus `args`,
    /// in `dir`.
    pub(crate) fn start<I, S>(dir: &Path, args: I) -> Daemon
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_greenwave"))
            .args(["run", "--no-view", "--grpc-listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start greenwave");
        let lines = lines(child.stderr.take().expect("piped stderr"));
        Daemon { child, lines, seen: Vec::new() }
    }

    /// Wait (bounded) for a log line containing `needle`.
    pub(crate) fn expect_line(&mut self, needle: &str) -> String {
        expect_line(&self.lines, needle, Duration::from_secs(30), &mut self.seen)
    }

    /// Wait for lines containing each needle, in any order.
    fn expect_lines(&mut self, needles: &[&str]) {
        let mut missing: Vec<&str> = needles.to_vec();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !missing.is_empty() && Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                missing.retain(|n| !line.contains(n));
                self.seen.push(line);
            }
        }
        assert!(missing.is_empty(), "no log lines with {missing:?}; saw:\n{}", self.seen.join("\n"));
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill {sig} failed");
    }

    /// Wait (bounded) for the exit; every log line is in [`Daemon::log`]
    /// after.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        // The reader thread ends with the pipe: take what it still holds.
        self.seen.extend(self.lines.iter());
        status
    }

    /// The log lines read so far.
    pub(crate) fn log(&self) -> &[String] {
        &self.seen
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn reload_rejects_bad_files_applies_good_ones_and_sigterm_flashes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let controllers = tmp.path().join("controllers");
    std::fs::create_dir(&controllers).unwrap();
    let file = controllers.join("elm-and-oak.toml");
    let original = std::fs::read_to_string(root.join("controllers/elm-and-oak.toml")).unwrap();
    std::fs::write(&file, &original).unwrap();

    let mut d = Daemon::start(tmp.path(), [OsStr::new("--controllers"), controllers.as_os_str()]);
    d.expect_line("ready: SIGHUP reloads");

    // A broken change: rejected with every error, the running plan kept.
    let broken = original.replacen("yellow_s = ", "yellow_s = 1.0 # ", 1).replacen(
        "[[phase]]",
        "[[phase]]\ncolour = \"red\"",
        1,
    );
    std::fs::write(&file, &broken).unwrap();
    d.signal("-HUP");
    d.expect_line("reload rejected");
    d.expect_lines(&["yellow_s", "colour"]);

    // A valid change: staged, then in force at the barrier.
    std::fs::write(&file, original.replacen("passage_s = ", "passage_s = 2.5 # was ", 1)).unwrap();
    d.signal("-HUP");
    d.expect_line("reload staged");
    d.expect_line("reloaded configuration in force");

    d.signal("-TERM");
    d.expect_line("greenwave stopped");
    let status = d.wait();
    assert!(status.success(), "exit status {status}");
    let logs: Vec<_> = std::fs::read_dir(tmp.path().join("log")).unwrap().map(|e| e.unwrap().path()).collect();
    let text: String = logs.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert!(text.lines().any(|l| l.starts_with("elm-and-oak,") && l.ends_with(",173,9")), "shutdown flash logged");
}

/// What a reload cannot apply is said, never called in force: a changed
/// `[simulation]` (the cabinet behind it is set up at start), a removed
/// file, a new `greenwave.toml`. A plan change in another file still
/// applies.
#[test]
fn reload_says_what_it_cannot_apply() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let controllers = tmp.path().join("controllers");
    std::fs::create_dir(&controllers).unwrap();
    for name in ["elm-and-oak.toml", "river-rd-and-mill-st.toml", "broadway-and-5th.toml"] {
        std::fs::copy(root.join("controllers").join(name), controllers.join(name)).unwrap();
    }
    let mut d = Daemon::start(tmp.path(), [OsStr::new("--controllers"), controllers.as_os_str()]);
    d.expect_line("ready: SIGHUP reloads");

    let elm = controllers.join("elm-and-oak.toml");
    let text = std::fs::read_to_string(&elm).unwrap();
    std::fs::write(&elm, text.replacen("seed = 7", "seed = 8", 1)).unwrap();
    std::fs::remove_file(controllers.join("river-rd-and-mill-st.toml")).unwrap();
    let broadway = controllers.join("broadway-and-5th.toml");
    let text = std::fs::read_to_string(&broadway).unwrap();
    std::fs::write(&broadway, text.replacen("passage_s = ", "passage_s = 2.5 # was ", 1)).unwrap();
    std::fs::write(tmp.path().join("greenwave.toml"), "tick_ms = 50\n").unwrap();
    d.signal("-HUP");
    d.expect_lines(&[
        "daemon settings changed beyond [grpc]",
        "reload rejected for this intersection: [simulation] changed",
        "controller file gone: not applied",
        "reload staged",
    ]);
    d.expect_line("reloaded configuration in force");
    d.signal("-TERM");
    assert!(d.wait().success());
    let log = d.log().join("\n");
    let staged: Vec<&str> = d.log().iter().filter(|l| l.contains("reload staged")).map(String::as_str).collect();
    assert_eq!(staged.len(), 1, "{log}");
    assert!(staged[0].contains("broadway-and-5th"), "{log}");
}

/// A listen address already taken: the daemon exits with an error that
/// names the listener and the address, and says the reason once.
#[test]
fn a_taken_listen_address_is_said_once_and_the_daemon_exits() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(env!("CARGO_BIN_EXE_greenwave"))
        .args(["run", "--no-view", "--grpc-listen", "127.0.0.1:0", "--duration-s", "5", "--controllers"])
        .arg(root.join("controllers"))
        .current_dir(dir.path())
        .env("GREENWAVE_HTTP__ENABLED", "true")
        .env("GREENWAVE_HTTP__LISTEN", addr.to_string())
        .env("NO_COLOR", "1")
        .output()
        .expect("run greenwave");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("greenwave: error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(error.contains(&format!("binding the metrics listener on {addr}")), "{error}");
    assert_eq!(error.matches("Address already in use").count(), 1, "{error}");
    drop(taken);
}
