//! `ordermesh up` when another process holds one of its ports: it stops at once and says which
//! component could not listen where, and how to move every port.

use std::process::{Command, Stdio};

#[test]
fn a_taken_port_is_named_and_the_port_offset_suggested() {
    let data_dir = tempfile::tempdir().unwrap();
    // Offset 300: clear of the quickstart test's platforms; order-svc's port is taken.
    let offset = 300;
    let taken = std::net::TcpListener::bind(("0.0.0.0", 50053 + offset)).expect("the port is free to take");
    let output = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .args(["up", "--data-dir"])
        .arg(data_dir.path())
        .args(["--port-offset", &offset.to_string()])
        .env("RUST_LOG", "off")
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run ordermesh up");
    drop(taken);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("order-svc cannot listen on 0.0.0.0:50353"), "{stderr}");
    assert!(stderr.contains("--port-offset"), "{stderr}");
}
