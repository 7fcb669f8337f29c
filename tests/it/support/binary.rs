//! The real `resume-server` binary as a child process, for signal and cluster
//! tests.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{DEADLINE, SECRET};

/// A running child server.
pub struct ServerProcess {
    /// The child.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Everything it logged.
    pub log: Arc<Mutex<String>>,
    /// The task copying stderr into `log`; done once the child's stderr closes.
    log_reader: Option<JoinHandle<()>>,
}

/// How to start a child server, for callers that need more than
/// [`ServerProcess::start`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Launch<'a> {
    /// Where to listen; `None` picks a free loopback port.
    pub addr: Option<SocketAddr>,
    /// `RESUME_DATA_DIR`; `None` leaves it to the environment (a Cassandra
    /// store keeps nothing on disk).
    pub data_dir: Option<&'a Path>,
    /// Extra environment, set after the defaults (so it may override them).
    pub env: &'a [(&'a str, &'a str)],
}

/// A free loopback port (free when this returns; a server binds it right after).
pub fn free_loopback_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

impl ServerProcess {
    /// Starts the binary on a free loopback port with `data_dir` and extra env.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(Launch {
            addr: None,
            data_dir: Some(data_dir),
            env,
        })
        .await
        .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Starts the binary as `launch` says and waits until it answers
    /// `/healthz`; an error (with the child's log) when it exits first, e.g.
    /// because its address is taken.
    pub async fn launch(launch: Launch<'_>) -> Result<Self, String> {
        let addr = launch.addr.unwrap_or_else(free_loopback_addr);
        let mut command = Command::new(env!("CARGO_BIN_EXE_resume-server"));
        command
            .env("RESUME_LISTEN", addr.to_string())
            .env("RESUME_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(data_dir) = launch.data_dir {
            command.env("RESUME_DATA_DIR", data_dir);
        }
        for (key, value) in launch.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn resume-server");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait on the child") {
                // The log ends when the pipe does; collect all of it.
                let _ = tokio::time::timeout(DEADLINE, reader).await;
                let log = log.lock().unwrap().clone();
                return Err(format!(
                    "resume-server on {addr} exited ({status}) before answering /healthz:\n{log}"
                ));
            }
            if matches!(http.get(format!("http://{addr}/healthz")).send().await, Ok(r) if r.status() == 200)
            {
                return Ok(Self {
                    child,
                    addr,
                    log,
                    log_reader: Some(reader),
                });
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until the binary on {addr} answers /healthz:\n{}",
                log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the child logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// One counter or gauge from the child's /metrics (see `super::metric_value`).
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body");
        super::metric_value(&text, name, labels)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().expect("running") as i32;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("exits within the deadline")
            .expect("wait");
        // The last lines may still be in the pipe; read up to its end.
        if let Some(reader) = self.log_reader.take() {
            let _ = tokio::time::timeout(DEADLINE, reader).await;
        }
        let log = self.log.lock().unwrap().clone();
        (exit, log)
    }

    /// SIGKILL; returns once the process is gone.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
