//! The binary's command line: the `token` and `schema apply` subcommands, and
//! configuration errors at start.

use crate::support::TestServer;
use cql_test_node::CqlTestNode;

#[tokio::test]
async fn the_token_subcommand_prints_a_token_the_server_accepts() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resume-server"))
        .args(["token", "--sub", "alice", "--ttl", "60"])
        .env("RESUME_JWT_SECRET", crate::support::SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let server = TestServer::start(&[]).await;
    assert_eq!(server.status_with_token(&token).await, 200);
    // Without a secret it refuses, saying why.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resume-server"))
        .args(["token", "--sub", "alice"])
        .env_remove("RESUME_JWT_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("RESUME_JWT_SECRET"));
}

#[tokio::test]
async fn invalid_configuration_fails_at_start_with_one_line_naming_the_knob() {
    for (variable, value, knob) in [
        (
            "RESUME_COMPLETION_THRESHOLD",
            "1.5",
            "--completion-threshold",
        ),
        ("RESUME_JWT_SECRET", "too-short", "RESUME_JWT_SECRET"),
        ("RESUME_FLUSH_INTERVAL_MS", "0", "--flush-interval-ms"),
        (
            "RESUME_JWT_PUBLIC_KEY",
            "/no/such/key.pem",
            "--jwt-public-key",
        ),
        ("RESUME_CATALOG", "/no/such/catalog.json", "catalog"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_resume-server"))
            .env(variable, value)
            .env("RESUME_LISTEN", "127.0.0.1:0")
            .env("RESUME_DATA_DIR", tempfile::tempdir().unwrap().path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{variable}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message: Vec<_> = stderr
            .lines()
            .filter(|l| l.starts_with("resume-server:"))
            .collect();
        assert_eq!(message.len(), 1, "{stderr}");
        assert!(message[0].contains(knob), "{variable}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_apply_creates_the_table_and_the_server_needs_it() {
    let node = CqlTestNode::start().await;
    let nodes = node.addr().to_string();
    let binary = env!("CARGO_BIN_EXE_resume-server");
    // Without the table the server refuses to start and says what to run.
    let output = tokio::process::Command::new(binary)
        .args([
            "--store",
            "cassandra",
            "--cassandra-nodes",
            &nodes,
            "--cassandra-consistency",
            "one",
        ])
        .env("RESUME_LISTEN", "127.0.0.1:0")
        .env("RESUME_JWT_SECRET", crate::support::SECRET)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("schema apply"));
    // `schema apply`, twice: idempotent.
    for _ in 0..2 {
        let output = tokio::process::Command::new(binary)
            .args(["--cassandra-nodes", &nodes, "schema", "apply"])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(node.has_table("resume", "playback_position"));
}
