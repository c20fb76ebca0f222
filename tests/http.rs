//! The metrics listener over a real socket (port 0): `/metrics` scraped
//! with a bare HTTP/1.1 GET, its OpenMetrics text parsed, and the figures
//! seen to move with the daemon; who may scrape; what `[http]` refuses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use greenwave::api::pb;
use greenwave::api::pb::watch_client::WatchClient;
use greenwave::config::{DaemonConfig, Env, GrpcConfig, HttpConfig, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::grpc::harness::{self, Harness, Options};
use crate::grpc::{CAMERA, OPERATOR, VIEWER, test_controller, tokens};

const ID: &str = "elm-and-oak";

/// The test controller in lockstep at 20 times real time, gRPC for
/// tokens only, metrics on a port the OS chooses.
pub(crate) async fn daemon(anonymous: Option<Role>) -> Harness {
    daemon_with(anonymous, None).await
}

/// [`daemon`], with the `greenwave.toml` a reload reads.
async fn daemon_with(anonymous: Option<Role>, config_file: Option<std::path::PathBuf>) -> Harness {
    let grpc = GrpcConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tokens: tokens(),
        anonymous: None,
        ..GrpcConfig::default()
    };
    let http =
        HttpConfig { enabled: true, listen: "127.0.0.1:0".parse().expect("addr"), anonymous, ..HttpConfig::default() };
    daemon_on(grpc, http, config_file).await
}

/// The test controller at 20 times real time, with these `[grpc]` and
/// `[http]` settings.
pub(crate) async fn daemon_on(grpc: GrpcConfig, http: HttpConfig, config_file: Option<std::path::PathBuf>) -> Harness {
    harness::start(Options {
        grpc,
        controllers: vec![test_controller()],
        speed: Some(20.0),
        event_history: 10_000,
        tick_ms: 100,
        config_file,
        dir: None,
        http: Some(http),
        ntcip: None,
        gbt20999: None,
    })
    .await
}

/// An HTTP answer: status code, headers (lower-case names), body.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// `GET path` over a fresh HTTP/1.1 connection, with a bearer token if given.
pub(crate) async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Answer {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    get_over(tcp, addr, path, token).await
}

/// `GET path` with `headers` (each line ending in CRLF) over a fresh
/// HTTP/1.1 connection.
pub(crate) async fn get_with(addr: SocketAddr, path: &str, headers: &str) -> Answer {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    exchange(tcp, addr, path, headers).await
}

/// `GET path` over `stream` (plain or TLS), then the connection closes.
async fn get_over<S>(stream: S, addr: SocketAddr, path: &str, token: Option<&str>) -> Answer
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    exchange(stream, addr, path, &auth).await
}

async fn exchange<S>(mut stream: S, addr: SocketAddr, path: &str, headers: &str) -> Answer
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    // A TLS peer may close without close_notify once the answer is sent.
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw)).await.expect("answered");
    assert!(read.is_ok() || !raw.is_empty(), "read: {read:?}");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    Answer { status, headers: head.to_ascii_lowercase(), body: body.to_owned() }
}

/// Every sample of an OpenMetrics text: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("a number: {l}")))
        })
        .collect()
}

async fn scrape(h: &Harness, token: Option<&str>) -> BTreeMap<String, f64> {
    let answer = get(h.http_addr.expect("metrics on"), "/metrics", token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.headers.contains("content-type: application/openmetrics-text; version=1.0.0"), "{}", answer.headers);
    assert!(answer.body.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    samples(&answer.body)
}

/// Scrapes until `check` holds (bounded); returns that scrape.
async fn scrape_until(
    h: &Harness,
    what: &str,
    check: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    for _ in 0..300 {
        let m = scrape(h, None).await;
        if check(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn at(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series).unwrap_or_else(|| panic!("no {series} in the scrape"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_daemon() {
    let h = daemon(Some(Role::Viewer)).await;
    // The start-up flash is counted by the engine before the intersection's
    // first snapshot is published (which the per-intersection series read):
    // wait for both.
    let detector_faults = format!(r#"greenwave_detector_faults{{intersection="{ID}",fault="no_activity"}}"#);
    let first = scrape_until(&h, "the start-up flash and the first snapshot", |m| {
        m.get(r#"greenwave_flashes_total{reason="startup"}"#).is_some_and(|&n| n >= 1.0)
            && m.contains_key(&detector_faults)
    })
    .await;
    assert_eq!(at(&first, r#"greenwave_flashes_total{reason="monitor_trip"}"#), 0.0, "every reason, zeros too");
    assert!(first.contains_key(r#"greenwave_tick_deadline_jitter_seconds_bucket{le="0.001"}"#));

    // Simulated traffic reaches a phase's volume; the cabinet link is up.
    let later = scrape_until(&h, "vehicles counted on phase 2 or 4", |m| {
        [2, 4].iter().any(|p| {
            m.get(&format!(r#"greenwave_phase_volume_total{{intersection="{ID}",phase="{p}"}}"#))
                .is_some_and(|&n| n > 0.0)
        })
    })
    .await;
    assert!(at(&later, "greenwave_ticks_total") > at(&first, "greenwave_ticks_total"), "ticks grow between scrapes");
    assert_eq!(at(&later, &format!(r#"greenwave_cabinet_link_up{{intersection="{ID}"}}"#)), 1.0);
    // The engine publishes its latency histograms now and then.
    assert!(at(&later, "greenwave_tick_duration_seconds_count") > 0.0);
    assert_eq!(
        at(&later, r#"greenwave_tick_duration_seconds_bucket{le="+Inf"}"#),
        at(&later, "greenwave_tick_duration_seconds_count")
    );
    let rtt = format!(r#"greenwave_cabinet_round_trip_seconds_count{{intersection="{ID}"}}"#);
    assert!(at(&later, &rtt) > 0.0, "round trips measured");
    assert!(later.contains_key(&format!(r#"greenwave_phase_occupancy_ratio{{intersection="{ID}",phase="2"}}"#)));

    // A gRPC call with a wrong token: one request, one refusal by its code.
    let refused = r#"greenwave_api_refusals_total{code="UNAUTHENTICATED"}"#;
    let requests = r#"greenwave_api_requests_total{method="greenwave.v1.Watch/ListIntersections"}"#;
    let before = scrape(&h, None).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut req = tonic::Request::new(pb::ListIntersectionsRequest {});
    req.metadata_mut().insert("authorization", "Bearer not-a-token".parse().expect("ascii"));
    let status = WatchClient::new(channel).list_intersections(req).await.expect_err("a wrong token is refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let after = scrape(&h, None).await;
    assert_eq!(at(&after, refused), at(&before, refused) + 1.0);
    assert_eq!(at(&after, requests), at(&before, requests) + 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_token_is_needed_when_anonymous_is_off() {
    let h = daemon(None).await;
    let addr = h.http_addr.expect("metrics on");
    let anonymous = get(addr, "/metrics", None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(anonymous.headers.contains("www-authenticate: bearer"), "{}", anonymous.headers);
    assert_eq!(get(addr, "/metrics", Some("not-a-token")).await.status, 401);
    let camera = get(addr, "/metrics", Some(CAMERA)).await;
    assert_eq!(camera.status, 403, "a camera may not scrape: {}", camera.body);
    scrape(&h, Some(OPERATOR)).await;
    let m = scrape(&h, Some(VIEWER)).await;
    // The refused scrapes are counted with the API's refusals.
    assert_eq!(at(&m, r#"greenwave_api_refusals_total{code="UNAUTHENTICATED"}"#), 2.0);
    assert_eq!(at(&m, r#"greenwave_api_refusals_total{code="PERMISSION_DENIED"}"#), 1.0);
    h.stop().await;
}

/// A token rotated in `[grpc]` and reloaded (SIGHUP) is the token that
/// scrapes from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_scrapers_tokens_too() {
    const ROTATED: &str = "rotated-viewer-token-0123456789abcdef01234567";
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("greenwave.toml");
    let h = daemon_with(None, Some(file.clone())).await;
    let addr = h.http_addr.expect("metrics on");
    assert_eq!(get(addr, "/metrics", Some(VIEWER)).await.status, 200);
    assert_eq!(get(addr, "/metrics", Some(ROTATED)).await.status, 401);
    let hash = greenwave::api::auth::hash_token(ROTATED);
    let text = format!(
        "[grpc]\nlisten = \"127.0.0.1:0\"\n[[grpc.token]]\nname = \"wall\"\nrole = \"viewer\"\nsha256 = \"{hash}\"\n"
    );
    std::fs::write(&file, text).expect("write");
    let reloader = h.reloader.clone();
    tokio::task::spawn_blocking(move || reloader.reload()).await.expect("reload");
    assert_eq!(get(addr, "/metrics", Some(ROTATED)).await.status, 200, "the new token scrapes");
    assert_eq!(get(addr, "/metrics", Some(VIEWER)).await.status, 401, "the old one is revoked");
    h.stop().await;
}

/// With `[http.tls]` a scraper speaking HTTP/1.1 over TLS (as Prometheus
/// does) is served; plaintext on the TLS port is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_tls_for_an_http1_scraper() {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
    let pki = crate::grpc::pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write pem");
        p
    };
    let tls = greenwave::config::grpc::TlsFiles {
        cert: write("server.pem", &pki.server_cert),
        key: write("server.key", &pki.server_key),
        client_ca: None,
        require_client_cert: false,
    };
    let grpc = GrpcConfig { listen: "127.0.0.1:0".parse().expect("addr"), tokens: tokens(), ..GrpcConfig::default() };
    let http = HttpConfig {
        enabled: true,
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: Some(tls),
        anonymous: None,
        ..HttpConfig::default()
    };
    let h = daemon_on(grpc, http, None).await;
    let addr = h.http_addr.expect("metrics on");

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).expect("CA pem")).expect("CA");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let stream = connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("TLS");
    let answer = get_over(stream, addr, "/metrics", Some(VIEWER)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("greenwave_ticks_total"), "{}", answer.body);

    let plain = tokio::time::timeout(Duration::from_secs(10), async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut raw = Vec::new();
        let _ = tcp.read_to_end(&mut raw).await;
        raw
    })
    .await
    .expect("closed");
    assert!(!String::from_utf8_lossy(&plain).contains("greenwave_"), "no metrics in clear text");
    h.stop().await;
}

#[test]
fn http_off_loopback_needs_tls_or_insecure_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let load = |text: &str| {
        let file = dir.path().join("greenwave.toml");
        std::fs::write(&file, text).expect("write");
        DaemonConfig::load_with_env(Some(&file), Env::Vars(BTreeMap::new()))
    };
    let errors = load("[http]\nlisten = \"0.0.0.0:9464\"\n").expect_err("plaintext off loopback");
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].contains("http.listen") && text[0].contains("configure [http.tls]"), "{text:?}");
    let cfg = load("[http]\nlisten = \"0.0.0.0:9464\"\ninsecure_plaintext = true\n").expect("intended");
    assert_eq!(cfg.http.anonymous, None, "no anonymous scraping off loopback");
    assert!(!load("").expect("no [http]").http.enabled, "off unless asked for");
}

/// The Prometheus project's own OpenMetrics parser (`prometheus_client`,
/// an independent implementation) reads a live scrape whole: every
/// sample line this file's parser sees, it sees too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_parser_reads_a_live_scrape() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Some(python) = crate::modbus::python_with("prometheus_client", "import prometheus_client.openmetrics.parser")
    else {
        return;
    };
    let h = daemon(Some(Role::Viewer)).await;
    scrape_until(&h, "the first snapshot", |m| m.keys().any(|k| k.starts_with("greenwave_detector_faults{"))).await;
    let answer = get(h.http_addr.expect("metrics on"), "/metrics", None).await;
    h.stop().await;
    let program = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        families = list(parse(sys.stdin.read()))\n\
        print(len(families), sum(len(f.samples) for f in families))";
    let mut child = Command::new(python)
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child.stdin.take().expect("stdin").write_all(answer.body.as_bytes()).expect("write the scrape");
    let out = child.wait_with_output().expect("python ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "prometheus_client refused the scrape: {}", String::from_utf8_lossy(&out.stderr));
    let counts: Vec<usize> = stdout.split_whitespace().map(|n| n.parse().expect("a count")).collect();
    assert!(counts[0] >= 20, "metric families: {stdout}");
    assert_eq!(counts[1], samples(&answer.body).len(), "every sample line parsed: {stdout}");
}
