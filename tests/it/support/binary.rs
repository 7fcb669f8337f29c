//! The real `resume-server` binary as a child process, for signal tests.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{DEADLINE, SECRET};

/// A running child server.
pub struct ServerProcess {
    /// The child.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Everything it logged.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServerProcess {
    /// Starts the binary on a free loopback port with `data_dir` and extra env.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_resume-server"));
        command
            .env("RESUME_LISTEN", addr.to_string())
            .env("RESUME_DATA_DIR", data_dir)
            .env("RESUME_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn resume-server");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let http = reqwest::Client::new();
        super::wait_until("the binary answers /healthz", || async {
            matches!(http.get(format!("http://{addr}/healthz")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        Self { child, addr, log }
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
        let log = self.log.lock().unwrap().clone();
        (exit, log)
    }

    /// SIGKILL.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
