//! Start-up and shutdown through the platform's service host, on the simplest service: a taken
//! port fails fast with a message that names the service and the address; an unreachable
//! database fails without hanging; a shutdown ends `run` cleanly.

use std::time::Duration;

use ordermesh_platform::testing::{self, TestAuth, TestDatabase};
use ordermesh_platform::{Listen, Shutdown};

const LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_taken_port_fails_within_seconds_naming_the_service_and_the_address() {
    let auth = TestAuth::start().await.unwrap();
    let db = TestDatabase::sqlite().unwrap();
    let config = testing::service_config(customer_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();

    let outcome = tokio::time::timeout(LIMIT, customer_svc::run(config, Listen::Address(addr), Shutdown::new()))
        .await
        .expect("run returns instead of hanging");

    let error = outcome.expect_err("the port is taken");
    let message = format!("{error:#}");
    assert!(message.contains("customer-svc"), "{message}");
    assert!(message.contains(&addr.to_string()), "{message}");
    let bind = error
        .downcast_ref::<ordermesh_platform::host::BindError>()
        .expect("a BindError");
    assert!(bind.address_in_use());
}

#[tokio::test]
async fn an_unreachable_database_fails_without_hanging() {
    let auth = TestAuth::start().await.unwrap();
    // A directory that cannot be created: the database cannot be opened.
    let url = "sqlite:///proc/ordermesh-none/customer.db";
    let config = testing::service_config(customer_svc::SERVICE, url, auth.auth_config()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();

    let outcome = tokio::time::timeout(LIMIT, customer_svc::run(config, listener.into(), Shutdown::new()))
        .await
        .expect("run returns instead of hanging");

    let message = format!("{:#}", outcome.expect_err("no database"));
    assert!(message.contains("customer-svc: opening the database"), "{message}");
}

#[tokio::test]
async fn shutdown_ends_a_running_service_cleanly() {
    let auth = TestAuth::start().await.unwrap();
    let db = TestDatabase::sqlite().unwrap();
    let config = testing::service_config(customer_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let mut handle = Some(tokio::spawn(customer_svc::run(
        config,
        listener.into(),
        shutdown.clone(),
    )));
    ordermesh_platform::host::wait_ready("customer-svc", addr, LIMIT, || {
        ordermesh_platform::launch::exit_error(&mut handle)
    })
    .await
    .unwrap();

    shutdown.trigger();
    let outcome = tokio::time::timeout(LIMIT, handle.take().unwrap())
        .await
        .expect("stops within the limit")
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}
