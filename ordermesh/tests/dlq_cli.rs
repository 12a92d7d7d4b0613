//! `ordermesh dlq list|replay` against the real NATS server (`NATS_URL`, default 127.0.0.1:4222),
//! on streams with a unique prefix that the test deletes afterwards.

use std::process::Command;
use std::time::Duration;

use ordermesh_platform::events::{EventBus, EventsConfig, NatsBus, OutgoingEvent, SubscriptionSpec};

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn cli(config: &EventsConfig, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .arg("dlq")
        .args(args)
        .args([
            "--subject-prefix",
            &config.subject_prefix,
            "--stream-prefix",
            &config.stream_prefix,
        ])
        .env("NATS_URL", nats_url())
        .output()
        .expect("run ordermesh");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn dlq_requires_nats_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .args(["dlq", "list"])
        .env_remove("NATS_URL")
        .output()
        .expect("run ordermesh");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("NATS_URL is not set"));
}

#[test]
fn dlq_list_and_replay() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = EventsConfig::isolated();
    let bus = runtime
        .block_on(NatsBus::connect(&nats_url(), config.clone()))
        .expect("NATS");
    let spec = SubscriptionSpec {
        service: "cli-test-svc".into(),
        topic: "payment-events".into(),
        ack_wait: Duration::from_secs(5),
        max_deliver: 3,
        max_ack_pending: 16,
    };
    let event = OutgoingEvent::from_bytes(
        "payment-svc",
        "payment-events",
        "PaymentFailed",
        "pay-1",
        "corr-9",
        vec![1, 2, 3],
    );
    let mut subscription = runtime.block_on(async {
        let mut subscription = bus.subscribe(&spec).await.unwrap();
        bus.publish(&event).await.unwrap();
        let delivery = subscription.next().await.unwrap();
        assert_eq!(delivery.event.id, event.id);
        delivery
            .acker
            .dead_letter("cli-test-svc", "gateway said no")
            .await
            .unwrap();
        subscription
    });

    let (ok, stdout, stderr) = cli(&config, &["list"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&event.id.to_string()), "{stdout}");
    assert!(stdout.contains("gateway said no") && stdout.contains("cli-test-svc") && stdout.contains("PaymentFailed"));

    let (ok, stdout, stderr) = cli(&config, &["replay", "--all"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("replayed 1"), "{stdout}");

    runtime.block_on(async {
        assert!(bus.dead_letters().await.unwrap().is_empty());
        let again = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.event.id, event.id, "same event id after replay");
        assert_eq!(again.event.payload.as_ref(), &[1, 2, 3]);
        again.acker.ack().await.unwrap();
        bus.delete_streams().await.unwrap();
    });
    let (ok, stdout, _) = cli(&config, &["replay", "1"]);
    assert!(!ok, "{stdout}");
}
