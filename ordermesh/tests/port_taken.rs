//! `ordermesh up` when another process holds one of its ports: it stops at once and says which
//! component could not listen where, and how to move every port.

use std::process::{Command, Stdio};

#[test]
fn a_taken_port_is_named_and_the_port_offset_suggested() {
    let data_dir = tempfile::tempdir().unwrap();
    // order-svc's address is taken; the services bound before it take any free port, so only
    // the taken one can fail.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .args(["up", "--data-dir"])
        .arg(data_dir.path())
        .args(["--port-offset", "300"])
        .env("RUST_LOG", "off")
        .env("PRODUCT_ADDR", "127.0.0.1:0")
        .env("CUSTOMER_ADDR", "127.0.0.1:0")
        .env("ORDER_ADDR", addr.to_string())
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
    assert!(
        stderr.contains(&format!("order-svc cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("--port-offset"), "{stderr}");
}
