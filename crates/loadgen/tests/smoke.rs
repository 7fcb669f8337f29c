//! The load generator in miniature, so that it cannot rot: a few hundred
//! sessions for a few seconds against an in-process server, spread over two
//! loadgen processes, with a reconnect storm; then HTTP progress, lookups and
//! the embedded-store bench; and a soak in miniature (the server sampled
//! through the window, lookups while the sessions tick); and that the bare
//! sink's HTTP layer answers like the server's. Asserts correctness only, never
//! speed.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The HS256 secret the test server and loadgen share.
const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A resume-server running in this process on a loopback port, flushing every 200 ms.
struct TestServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Stops it.
    stop: oneshot::Sender<()>,
    /// The server task.
    task: JoinHandle<Result<(), resume_server::RunError>>,
    /// Its data dir (the embedded store lives in it).
    data: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let secret_file = data.path().join("jwt-secret");
        std::fs::write(&secret_file, SECRET).expect("write the secret file");
        let config = resume_server::config::Config::from_env_and_args([
            "resume-server",
            "--data-dir",
            data.path().to_str().expect("utf-8 path"),
            "--jwt-secret-file",
            secret_file.to_str().expect("utf-8 path"),
            "--flush-interval-ms",
            "200",
        ])
        .expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(resume_server::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never listened"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Self {
            addr,
            stop,
            task,
            data,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("joins").expect("stops cleanly");
    }
}

/// Runs the built `loadgen` binary and returns its JSON report.
async fn loadgen(args: &[&str]) -> Value {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .env("RESUME_JWT_SECRET", SECRET)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("loadgen finishes in time")
    .expect("loadgen runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadgen {args:?} failed:\n{log}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("loadgen report is JSON ({e}):\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_storm_and_final_positions() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let pid = std::process::id().to_string();
    let report = loadgen(&[
        "sessions",
        "--addr",
        &addr,
        "--server-pid",
        &pid,
        // The store runs in this process too: this only checks the plumbing.
        "--store-pid",
        &pid,
        "--viewers",
        "300",
        "--processes",
        "2",
        "--connect-rate",
        "2000",
        "--tick-rate",
        "2",
        "--duration",
        "2",
        "--settle",
        "0.5",
        "--check-every",
        "1",
        "--storm",
    ])
    .await;
    assert_eq!(report["connected"], 300, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["unexpected_closes"], 0, "{report:#}");
    assert!(report["sent"].as_u64().unwrap() >= 300, "{report:#}");
    // Flushes every 200 ms in tests: every session has had writes acknowledged.
    assert!(report["acks"].as_u64().unwrap() >= 300, "{report:#}");
    assert!(report["window_ticks"].as_f64().unwrap() > 0.0, "{report:#}");
    // The plateau's own acks and the server's write-latency histogram.
    assert!(report["window_acks"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["write_p99_ms"].as_f64().unwrap() > 0.0, "{report:#}");
    assert!(
        report["writes_in_flight_mean"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert!(
        report["store_node"]["rss_bytes"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert_eq!(report["storm"]["expected"], 300, "{report:#}");
    assert_eq!(report["storm"]["reconnected"], 300, "{report:#}");
    assert_eq!(report["checked"], 300, "{report:#}");
    assert_eq!(report["check_wrong"], 0, "{report:#}");
    server.stop().await;
}

/// `bench/soak.sh` in miniature: the report carries the server's time series
/// through the window, its start-to-end drift (RSS, CPU per tick, the store's
/// size on disk), and lookups answered while the sessions ticked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_samples_the_server_and_looks_up_while_ticking() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let pid = std::process::id().to_string();
    let store_dir = server.data.path().to_str().expect("utf-8 path").to_owned();
    let report = loadgen(&[
        "sessions",
        "--addr",
        &addr,
        "--server-pid",
        &pid,
        "--store-dir",
        &store_dir,
        "--viewers",
        "200",
        "--connect-rate",
        "2000",
        "--duration",
        "5",
        "--settle",
        "0.5",
        "--sample-every",
        "1",
        "--lookup-concurrency",
        "4",
        "--check-every",
        "1",
    ])
    .await;
    assert_eq!(report["connected"], 200, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["check_wrong"], 0, "{report:#}");
    // A sample when the window opens, one a second, one when it closes.
    let samples = report["samples"].as_array().expect("samples");
    assert!(samples.len() >= 5, "{report:#}");
    let ticks: Vec<f64> = samples
        .iter()
        .map(|s| s["ticks"].as_f64().unwrap())
        .collect();
    assert!(ticks.windows(2).all(|w| w[0] <= w[1]), "{report:#}");
    assert!(ticks.last() > ticks.first(), "{report:#}");
    let drift = &report["drift"];
    assert!(drift["rss_end_bytes"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        drift["cpu_us_per_tick_end"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    // The embedded store's file is on disk and was measured.
    assert!(drift["store_end_bytes"].as_u64().unwrap() > 0, "{report:#}");
    let lookups = &report["window_lookups"];
    assert!(lookups["requests"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(lookups["errors"], 0, "{report:#}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_progress_then_lookups() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let report = loadgen(&[
        "http",
        "--addr",
        &addr,
        "--viewers",
        "100",
        "--interval-ms",
        "300",
        "--duration",
        "1.5",
        "--settle",
        "0.2",
        "--check-every",
        "1",
    ])
    .await;
    assert_eq!(report["connected"], 100, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert!(report["acks"].as_u64().unwrap() >= 100, "{report:#}");
    assert!(
        report["window_writes"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert_eq!(report["checked"], 100, "{report:#}");
    assert_eq!(report["check_wrong"], 0, "{report:#}");

    let lookups = loadgen(&[
        "lookup",
        "--addr",
        &addr,
        "--concurrency",
        "4",
        "--duration",
        "1",
        "--users",
        "100",
    ])
    .await;
    assert_eq!(lookups["errors"], 0, "{lookups:#}");
    assert!(lookups["requests"].as_u64().unwrap() > 0, "{lookups:#}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_bench_counts_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let report = loadgen(&[
        "store",
        "--data-dir",
        path.to_str().unwrap(),
        "--writers",
        "32",
        "--duration",
        "0.5",
        "--commit-delay-ms",
        "7",
    ])
    .await;
    assert_eq!(report["errors"], 0, "{report:#}");
    let writes = report["writes"].as_u64().unwrap();
    let commits = report["commits"].as_u64().unwrap();
    assert!(writes > 0 && commits > 0 && commits <= writes, "{report:#}");
    assert_eq!(report["commit_delay_ms"], 7.0, "{report:#}");
    let cpu = report["cpu_us_per_write"].as_f64().unwrap();
    assert!(cpu > 0.0 && cpu.is_finite(), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_trial_runs_both_engines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("engines");
    let report = loadgen(&[
        "engines",
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
        "--keys",
        "100",
        "--batch",
        "8",
        "--duration",
        "0.3",
    ])
    .await;
    let engines = report["engines"].as_array().expect("engines");
    let names: Vec<_> = engines
        .iter()
        .map(|e| e["engine"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["redb", "fjall"], "{report:#}");
    for engine in engines {
        let (writes, commits) = (
            engine["writes"].as_u64().unwrap(),
            engine["commits"].as_u64().unwrap(),
        );
        assert!(commits > 0, "{report:#}");
        assert_eq!(writes, commits * 8, "{report:#}");
        assert!(engine["disk_bytes"].as_u64().unwrap() > 0, "{report:#}");
    }
}

/// The response head of `GET path` over a fresh connection, header names lowercased.
async fn response_head(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("answers in time")
    .expect("reads");
    let response = String::from_utf8_lossy(&response);
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .map(|line| match line.split_once(':') {
            Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The address a child process prints after `prefix` once it listens.
async fn bound_address(child: &mut tokio::process::Child, prefix: &str) -> SocketAddr {
    use tokio::io::AsyncBufReadExt;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let found = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("reads stderr") {
            if let Some(addr) = line.strip_prefix(prefix) {
                return addr.parse().ok();
            }
        }
        None
    })
    .await;
    // Keep reading, so that the child never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no {prefix:?} line within 20 s"))
}

/// The bare sink is a fair baseline only if its HTTP layer is the server's:
/// every response carries the same security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bare_sink_answers_with_the_servers_security_headers() {
    let server = TestServer::start().await;
    let mut sink = Command::new(env!("CARGO_BIN_EXE_bare_sink"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RESUME_JWT_SECRET", SECRET)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bare_sink starts");
    let sink_addr = bound_address(&mut sink, "bare_sink listening on ").await;
    let server_head = response_head(server.addr, "/healthz").await;
    let sink_head = response_head(sink_addr, "/metrics").await;
    for (name, _) in resume_server::http::security_headers::SECURITY_HEADERS {
        let line = |head: &str| {
            head.lines()
                .find(|line| line.starts_with(&format!("{name}:")))
                .map(str::to_owned)
        };
        let expected = line(&server_head);
        assert!(
            expected.is_some(),
            "the server sends {name}:\n{server_head}"
        );
        assert_eq!(line(&sink_head), expected, "bare_sink's head:\n{sink_head}");
    }
    sink.kill().await.expect("bare_sink stops");
    server.stop().await;
}
