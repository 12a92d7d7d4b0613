//! schemathesis (PyPI, installed into the peers venv by `scripts/peers.sh`) against the live
//! BFF's OpenAPI document, with every default check and every phase: as a client on the
//! external surface and as an admin on the internal one. It must find no failure and show no
//! warning: an operation whose every schema-valid request is refused ("schema validation
//! mismatch", "missing test data") means a document that does not state the handler's rules or
//! a run without real data to work on, and one answered only 401/403 means a run that never got
//! past the door. Its summary is written to the test's stderr unconditionally, so it shows in
//! the CI log. `SCHEMATHESIS_FAIL_ON_WARNINGS=0` shows warnings without failing on them.
//!
//! Its configuration (written per run) gives it test data the way a tester would: real ids of
//! an order, its payment, a product and the client's customer as dictionaries for the path
//! parameters (drawn four times in five, so unknown ids are still tried), order lines naming
//! sellable products for half of the placements (the other half draws product ids, nearly
//! always unknown: 409), and no page token but the ones the API hands out: a page token is
//! opaque and bound to its filters, so a drawn one is rightly refused.
//!
//! One worker: Python 3.11's `ast` module is not thread-safe, and hypothesis uses it while
//! generating (seen as "AST constructor recursion depth mismatch" with `--workers 2`).
//!
//! Every default check runs (schema-valid requests accepted, schema-violating ones refused,
//! 405 for undeclared methods, deleted resources gone, …). The configuration departs from the
//! defaults in two places, each for a documented behaviour: DELETE on an order (cancel) or a
//! customer (GDPR erasure) keeps a record, which the use-after-free check would take for a
//! deleted resource; and an order naming products the catalogue does not hold is 409, the
//! catalogue's state, which JSON Schema cannot know. Its hooks (`e2e/schemathesis/hooks.py`) make every well-formed `Idempotency-Key` a
//! fresh one, as a client's are: the fuzzer reuses short keys across unrelated bodies, which is
//! rightly 422 (`idempotency-key-reused`, tested in bff_security.rs) and would leave a phase
//! with no placed order. `SCHEMATHESIS_STRICT=0` runs only "no server error" and "answers as
//! documented", without failing on warnings (to look at one thing at a time).
//!
//! Bounded for CI: `--max-examples` (default 20, `SCHEMATHESIS_MAX_EXAMPLES`) and `--max-time`
//! (default 100 s per run, `SCHEMATHESIS_MAX_TIME`). Every operation is exercised, all six
//! services running behind the BFF; only the notification stream (it never ends) is left to
//! bff_sse.rs. `SCHEMATHESIS_ARGS` (whitespace-separated) narrows a local run, e.g.
//! `--include-path-regex orders`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;

use bff::Surface;
use ordermesh_e2e::{CountingGateway, Fault, Platform};
use ordermesh_proto::order::OrderStatus;

/// The `schemathesis` CLI of the peers venv (next to `$ORDERMESH_PYTHON`).
fn schemathesis() -> PathBuf {
    let python = std::env::var("ORDERMESH_PYTHON")
        .expect("ORDERMESH_PYTHON is not set: run `eval \"$(scripts/peers.sh)\"` (scripts/test does)");
    PathBuf::from(python)
        .parent()
        .expect("venv bin directory")
        .join("schemathesis")
}

fn say(text: &str) {
    // Straight to the process's stderr: libtest captures only the print macros.
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Real ids for the parameters of the operations whose paths match: fresh for each run, since
/// a run cancels, ships, refunds and replays what it finds.
struct TestData {
    /// Orders to read and cancel, and others to ship (a shipped order cannot be cancelled).
    orders: Vec<String>,
    orders_to_ship: Vec<String>,
    payments: Vec<String>,
    product: String,
    /// The product the order lines name: no other operation is pointed at it (an admin's run
    /// changes the first product's currency, and an order mixing currencies is refused), and
    /// lines naming it more than once merge.
    other_product: String,
    customer: String,
    /// The token of the client whose data this is: an employee's run calls the operations only
    /// clients may call (their own profile, placing an order) with it.
    client: String,
    /// Another client, with its token, for the erasure: erasing the run's own client would
    /// leave it without a profile (every later call of its run a 404).
    erasable: (String, String),
    dead_letters: Vec<String>,
}

impl TestData {
    /// Confirmed orders of `customer` (with their payments), and dead letters if `fault` is
    /// injected meanwhile (their notifications are refused).
    async fn seed(
        platform: &Platform,
        client: &str,
        customer: &str,
        product: &str,
        other_product: &str,
        run: &str,
        fault: Option<&Fault>,
    ) -> Self {
        if let Some(fault) = fault {
            fault.inject().await;
        }
        let (mut orders, mut payments) = (Vec::new(), Vec::new());
        for i in 0..8 {
            let placed = platform
                .place(client, customer, &[(product, 1)], "tok_approved", &format!("{run}-{i}"))
                .await
                .unwrap();
            let order = placed.order.expect("order").id;
            platform
                .wait_for(&order, &[OrderStatus::Confirmed], std::time::Duration::from_secs(30))
                .await
                .unwrap();
            payments.push(platform.payments_of(&order).await.unwrap().remove(0).id);
            orders.push(order);
        }
        let erasable = platform.client(&format!("erasable-{}", &run[..5])).await.unwrap();
        let mut dead_letters = Vec::new();
        if let Some(fault) = fault {
            dead_letters = seeded_dead_letters(platform).await;
            fault.fix().await;
        }
        Self {
            orders_to_ship: orders.split_off(4),
            orders,
            payments,
            product: product.to_owned(),
            other_product: other_product.to_owned(),
            customer: customer.to_owned(),
            client: client.to_owned(),
            erasable,
            dead_letters,
        }
    }

    fn config(&self, token: &str, employee: bool, strict: bool) -> String {
        let mut toml = format!("headers = {{ Authorization = \"Bearer {token}\" }}\n\n");
        if strict && !std::env::var("SCHEMATHESIS_FAIL_ON_WARNINGS").is_ok_and(|v| v == "0") {
            toml.push_str("[warnings]\nfail-on = true\n\n");
        }
        toml.push_str("[parameters]\n\"query.pageToken\" = \"\"\n\n");
        let quoted = |ids: &[String]| ids.iter().map(|id| format!("\"{id}\"")).collect::<Vec<_>>().join(", ");
        for (name, values) in [
            ("order", quoted(&self.orders)),
            ("order_to_ship", quoted(&self.orders_to_ship)),
            ("payment", quoted(&self.payments)),
            ("product", quoted(std::slice::from_ref(&self.product))),
            ("customer", quoted(std::slice::from_ref(&self.customer))),
            ("dead_letter", self.dead_letters.join(", ")),
        ] {
            if !values.is_empty() {
                toml.push_str(&format!("[dictionaries.{name}]\nvalues = [{values}]\n\n"));
            }
        }
        // A cancel or an erasure always names a seeded order or customer (the first call acts,
        // the rest find it done): drawn ids would make nearly every call a 404. A client erases
        // the other client, as that client.
        let (erasable_token, erasable) = &self.erasable;
        let eraser = if employee { token } else { erasable_token };
        for (path, id, caller) in [
            ("/api/v1/orders/{id}", &self.orders[0], token),
            ("/api/v1/customers/{id}", erasable, eraser),
        ] {
            toml.push_str(&format!(
                "[[operations]]\ninclude-name = \"DELETE {path}\"\n\
                 headers = {{ Authorization = \"Bearer {caller}\" }}\n\
                 parameters = {{ \"path.id\" = \"{id}\" }}\n\
                 checks = {{ use_after_free = {{ enabled = false }} }}\n\n"
            ));
        }
        let mut paths = vec![
            (r"^/api/v1/orders/\\{id\\}$", "path.id", "order"),
            (r"^/api/v1/payments/\\{id\\}", "path.id", "payment"),
            (r"^/api/v1/products/\\{id\\}", "path.id", "product"),
            (r"^/api/v1/customers/\\{id\\}", "path.id", "customer"),
        ];
        if employee {
            paths.push((r"^/api/v1/orders/\\{id\\}/status$", "path.id", "order_to_ship"));
            paths.push((r"^/api/v1/audit/gdpr/\\{customerId\\}", "path.customerId", "customer"));
        }
        if !self.dead_letters.is_empty() {
            paths.push((r"^/api/v1/admin/dead-letters/\\{id\\}", "path.id", "dead_letter"));
        }
        for (path, parameter, dictionary) in paths {
            toml.push_str(&format!(
                "[[operations]]\ninclude-path-regex = \"{path}\"\n\
                 parameters = {{ \"{parameter}\" = {{ dictionary = \"{dictionary}\", probability = 0.8 }} }}\n"
            ));
            if matches!(dictionary, "customer" | "order") && parameter == "path.id" {
                // DELETE keeps a record here, as the platform's documents ask: on an order it
                // cancels it (the order stays, `cancelled`, for accounting); on a customer it is
                // the GDPR erasure, asynchronous (202), leaving a tombstone staff can read
                // (`erased`, no personal data). This check would take either for a deleted
                // resource still served.
                toml.push_str("checks = { use_after_free = { enabled = false } }\n");
            }
            toml.push('\n');
        }
        // In an employee's run, the operations only clients may call are called as the client
        // (an employee's 403 there is the role matrix's, tested in bff_security.rs).
        let as_client = |method: &str, path: &str| {
            let client_only = bff::policy::MATRIX
                .iter()
                .any(|r| r.method == method && r.path == path && r.employees == bff::policy::Employees::None);
            if employee && client_only {
                format!("headers = {{ Authorization = \"Bearer {}\" }}\n", self.client)
            } else {
                String::new()
            }
        };
        for rule in bff::policy::MATRIX {
            let (method, path) = (rule.method, rule.path);
            if (method, path) != ("POST", "/api/v1/orders") && !as_client(method, path).is_empty() {
                toml.push_str(&format!(
                    "[[operations]]\ninclude-name = \"{method} {path}\"\n{}\n",
                    as_client(method, path)
                ));
            }
        }
        // Half of the order lines name a product for sale (the other half draw ids, nearly always
        // unknown: 409), so placing an order is seen to work. Every well-formed Idempotency-Key
        // is a fresh one (e2e/schemathesis/hooks.py), so a 422 here would be a real mismatch.
        toml.push_str(&format!(
            "[dictionaries.for_sale]\nvalues = [\"{}\"]\n\n\
             [[operations]]\ninclude-name = \"POST /api/v1/orders\"\n{}\
             parameters = {{ \"body.items[*].productId\" = {{ dictionary = \"for_sale\", probability = 0.5 }} }}\n\
             checks = {{ positive_data_acceptance = {{ expected-statuses = \
             [\"2xx\", \"401\", \"403\", \"404\", \"409\", \"429\", \"5xx\"] }} }}\n\n",
            self.other_product,
            as_client("POST", "/api/v1/orders"),
        ));
        toml
    }
}

async fn run(base: &str, who: &str, employee: bool, token: &str, data: &TestData) -> (bool, String) {
    let max_examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "20".into());
    let max_time = std::env::var("SCHEMATHESIS_MAX_TIME").unwrap_or_else(|_| "100".into());
    let selection = std::env::var("SCHEMATHESIS_ARGS").unwrap_or_default();
    // schemathesis keeps a cache in its working directory: not in the clone.
    let workdir = std::env::temp_dir().join(format!("ordermesh-schemathesis-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&workdir).expect("schemathesis working directory");
    let strict = !std::env::var("SCHEMATHESIS_STRICT").is_ok_and(|v| v == "0");
    let config = workdir.join("schemathesis.toml");
    std::fs::write(&config, data.config(token, employee, strict)).expect("schemathesis configuration");
    let checks: &[&str] = if strict {
        &[]
    } else {
        &["--checks", "not_a_server_error,response_schema_conformance"]
    };
    let output = tokio::process::Command::new(schemathesis())
        .current_dir(&workdir)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .args(checks)
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--max-examples", &max_examples, "--max-time", &max_time])
        // The notification stream never ends by design (bff_sse.rs covers it).
        .args(["--exclude-path", "/api/v1/notifications/stream"])
        .args(selection.split_whitespace())
        .args(["--seed", "20261122", "--request-timeout", "20"])
        .args(["--no-color", "--suppress-health-check", "all"])
        .env("NO_COLOR", "1")
        .env(
            "SCHEMATHESIS_HOOKS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis/hooks.py"),
        )
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run schemathesis (is it installed in the peers venv? see tests/peers/requirements.txt)");
    let _ = std::fs::remove_dir_all(&workdir);
    let mut log = format!("\n===== schemathesis as {who} =====\n");
    log.push_str(&String::from_utf8_lossy(&output.stdout));
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), log)
}

/// The ids of the dead letters the seed left, once there are some.
async fn seeded_dead_letters(platform: &Platform) -> Vec<String> {
    let mut ops = ordermesh_proto::ops::ops_service_client::OpsServiceClient::new(platform.channel("notification"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let request = ordermesh_platform::testing::with_token(
            ordermesh_proto::ops::ListDeadLettersRequest::default(),
            &platform.admin,
        );
        let letters = ops
            .list_dead_letters(request)
            .await
            .expect("list dead letters")
            .into_inner();
        if !letters.dead_letters.is_empty() {
            return letters
                .dead_letters
                .iter()
                .map(|letter| letter.id.to_string())
                .collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter after the fault");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    // Few, quick redeliveries: the seed's dead letters appear at once.
    let mut platform = Platform::start_tuned(CountingGateway::sandbox(), false, |events| {
        events.max_deliver = 2;
        events.retry_backoff = vec![std::time::Duration::from_millis(50)];
    })
    .await
    .unwrap();
    let mut bases = Vec::new();
    for surface in [Surface::External, Surface::Internal] {
        let mut config = platform.bff_config(surface);
        // Fuzzing is many requests from one principal; the limits are tested elsewhere.
        config.rate_limits.external = 1_000_000;
        config.rate_limits.internal = 1_000_000;
        bases.push(platform.start_bff_with(config).await.unwrap());
    }
    // Some data to find: a product, a client with a profile, confirmed orders with payments,
    // and (for the admin) dead letters; a client of its own for each run, since a run may erase
    // the customer it finds.
    let product = platform.product(1500, 100_000).await.unwrap();
    let other_product = platform.product(420, 100_000).await.unwrap();
    let fault = Fault::open(&platform).await;
    let admin = platform.admin.clone();
    let mut failed = Vec::new();
    for (who, base, employee) in [
        ("client, external surface", &bases[0], false),
        ("admin, internal surface", &bases[1], true),
    ] {
        let (client, customer) = platform.client(&format!("fuzz-{}", &who[..5])).await.unwrap();
        let fault = employee.then_some(&fault);
        let data = TestData::seed(
            &platform,
            &client,
            &customer,
            &product.id,
            &other_product.id,
            who,
            fault,
        )
        .await;
        let token = if employee { &admin } else { &client };
        let (ok, log) = run(base, who, employee, token, &data).await;
        say(&log);
        if !ok {
            failed.push(who);
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis failed for {failed:?} (its report is above)"
    );
}
