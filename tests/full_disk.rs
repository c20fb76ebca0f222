//! The event log on a full disk (issue #19): the daemon writes its log on a
//! small tmpfs that fills up and frees again while it runs. Mounted in a
//! user and mount namespace (`unshare`), so the test needs no root; the
//! daemon is the binary under test, nothing mocked.
//!
//! On disk afterwards: the file written before the outage, the events held
//! during it and those after, every line whole, no file without events, the
//! outage said once each way and alarmed (200/6, 201/6) for every
//! intersection, and nothing dropped.

use std::path::Path;
use std::process::Command;

use greenwave::telemetry::read_event_log;

/// The script run inside the namespace: mount, start the daemon, fill the
/// disk once its log has a file, free it again, wait for the daemon, copy
/// the log out (the tmpfs is visible only inside).
const SCRIPT: &str = r#"
set -u
cd "$DIR"
mount -t tmpfs -o size=256k greenwave-full-disk log || exit 90
GREENWAVE_EVENT_LOG__MAX_FILE_BYTES=8192 GREENWAVE_EVENT_LOG__KEEP_FILES=50 RUST_LOG=info NO_COLOR=1 \
    "$GW" run --no-view --grpc-listen 127.0.0.1:0 --controllers controllers --duration-s 20 >/dev/null 2>daemon.err &
daemon=$!
for _ in $(seq 1 200); do
    ls log/greenwave-events-* >/dev/null 2>&1 && break
    sleep 0.1
done
sleep 1
dd if=/dev/zero of=log/filler bs=1k 2>/dev/null
df -k log | tail -1 >disk_full
sleep 8
rm log/filler
wait "$daemon"
echo $? >daemon.exit
cp log/greenwave-events-* out/
"#;

const INTERSECTIONS: usize = 24;

#[test]
fn a_full_disk_loses_no_event_and_leaves_no_partial_line_or_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for sub in ["log", "out", "controllers"] {
        std::fs::create_dir(dir.join(sub)).unwrap();
    }
    // 24 intersections (the shipped three, eight times over), so events
    // come fast enough to fill the page a file already has on the tmpfs.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("controllers");
    for name in ["broadway-and-5th", "elm-and-oak", "river-rd-and-mill-st"] {
        let text = std::fs::read_to_string(shipped.join(format!("{name}.toml"))).unwrap();
        for copy in 1..=INTERSECTIONS / 3 {
            let renamed = text.replacen(&format!("id = \"{name}\""), &format!("id = \"{name}-{copy}\""), 1);
            assert_ne!(renamed, text, "{name}: the id line");
            std::fs::write(dir.join(format!("controllers/{name}-{copy}.toml")), renamed).unwrap();
        }
    }
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--fork", "sh", "-c", SCRIPT])
        .env("DIR", dir)
        .env("GW", env!("CARGO_BIN_EXE_greenwave"))
        .status()
        .expect("unshare (util-linux) runs");
    let stderr = std::fs::read_to_string(dir.join("daemon.err")).unwrap_or_default();
    assert!(
        status.success(),
        "namespace script failed ({status}; 90: cannot mount a tmpfs in a user namespace); daemon log:\n{stderr}"
    );
    let exit = std::fs::read_to_string(dir.join("daemon.exit")).unwrap();
    assert_eq!(exit.trim(), "0", "daemon exit; log:\n{stderr}");

    // Said once each way, with nothing dropped.
    let lines = |needle: &str| stderr.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("event log cannot be written"), 1, "{stderr}");
    assert_eq!(lines("event log writable again"), 1, "{stderr}");
    assert!(stderr.contains("0 dropped"), "{stderr}");
    let closed = stderr.lines().find(|l| l.contains("event log closed")).expect("closing line");
    let field = |name: &str| -> u64 {
        let at = closed.find(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {closed}")) + name.len() + 1;
        closed[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert_eq!((field("dropped"), field("behind")), (0, 0), "{closed}");

    // On disk: every file whole, with events; the first file survives.
    let mut files: Vec<_> = std::fs::read_dir(dir.join("out")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names.first().map(String::as_str), Some("greenwave-events-000001.csv"), "{names:?}");
    let mut events = Vec::new();
    for f in &files {
        let read = read_event_log(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!read.is_empty(), "{} holds no event", f.display());
        assert!(std::fs::read_to_string(f).unwrap().ends_with('\n'), "{} ends mid-line", f.display());
        events.extend(read);
    }
    assert_eq!(events.len() as u64, field("written"), "events on disk vs written");

    // Per intersection: before, during (between the alarms) and after the
    // outage, in time order.
    let mut ids: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), INTERSECTIONS, "{ids:?}");
    let mut totals = [0usize; 3];
    for id in ids {
        let mine: Vec<_> = events.iter().filter(|e| e.0 == id).collect();
        assert!(mine.windows(2).all(|w| w[0].1 <= w[1].1), "{id}: events out of order");
        let on = mine.iter().position(|e| (e.2, e.3) == (200, 6)).unwrap_or_else(|| panic!("{id}: no alarm 200/6"));
        let off = mine.iter().position(|e| (e.2, e.3) == (201, 6)).unwrap_or_else(|| panic!("{id}: no alarm 201/6"));
        let (before, during, after) = (on, off - on - 1, mine.len() - off - 1);
        assert!(before > 0 && during > 0 && after > 0, "{id}: {before}/{during}/{after}");
        for (t, n) in totals.iter_mut().zip([before, during, after]) {
            *t += n;
        }
        assert_eq!(mine.last().map(|e| (e.2, e.3)), Some((173, 9)), "{id}: ends with the shutdown flash");
    }
    let disk = std::fs::read_to_string(dir.join("disk_full")).unwrap_or_default();
    let [before, during, after] = totals;
    eprintln!(
        "on disk: {before} events before the outage, {during} during it (held), {after} after; {} files",
        names.len()
    );
    eprintln!("tmpfs while full (df -k): {}", disk.trim());
    for l in stderr.lines().filter(|l| l.contains("event log")) {
        eprintln!("{l}");
    }
}
