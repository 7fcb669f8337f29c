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
        (
            "RESUME_JWT_SECRET_FILE",
            "/no/such/secret",
            "--jwt-secret-file",
        ),
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
    // Without a replication map, outside development, `schema apply` refuses.
    let output = tokio::process::Command::new(binary)
        .args(["--cassandra-nodes", &nodes, "schema", "apply"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cassandra-replication"), "{stderr}");
    assert!(!node.has_table("resume", "playback_position"));
    // `schema apply`, twice: idempotent.
    for _ in 0..2 {
        let output = tokio::process::Command::new(binary)
            .args([
                "--cassandra-nodes",
                &nodes,
                "--cassandra-development",
                "schema",
                "apply",
            ])
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

#[tokio::test]
async fn secrets_come_from_the_environment_or_files_never_from_flags() {
    let binary = env!("CARGO_BIN_EXE_resume-server");
    // `ps` shows flags: there are none for secrets, and --help says where they go.
    for flag in ["--jwt-secret", "--cassandra-password"] {
        let output = std::process::Command::new(binary)
            .args([flag, crate::support::SECRET, "token", "--sub", "alice"])
            .env_remove("RESUME_JWT_SECRET")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("unexpected argument"), "{flag}: {stderr}");
    }
    let help = std::process::Command::new(binary)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for text in [
        "--jwt-secret-file",
        "RESUME_JWT_SECRET",
        "--cassandra-password-file",
        "RESUME_CASSANDRA_PASSWORD",
        "--cassandra-tls",
    ] {
        assert!(help.contains(text), "--help lacks {text}:\n{help}");
    }

    // The token subcommand signs with a secret from a file as from the environment.
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, format!("{}\n", crate::support::SECRET)).unwrap();
    let output = std::process::Command::new(binary)
        .arg("--jwt-secret-file")
        .arg(&secret_file)
        .args(["token", "--sub", "alice", "--ttl", "60"])
        .env_remove("RESUME_JWT_SECRET")
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

    // Both at once is ambiguous, and refused naming both.
    let output = std::process::Command::new(binary)
        .arg("--jwt-secret-file")
        .arg(&secret_file)
        .args(["token", "--sub", "alice"])
        .env("RESUME_JWT_SECRET", crate::support::SECRET)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--jwt-secret-file") && stderr.contains("RESUME_JWT_SECRET"),
        "{stderr}"
    );
}
