//! The README quickstart, run as documented against `ordermesh up` started as a separate
//! process: the gRPC services answer a reflection client no one here wrote, and a restart on the
//! same data directory keeps the data without duplicating the demo records.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::run_peer;

/// `ordermesh up` in a child process; killed (SIGKILL) if the test fails before stopping it.
struct Up {
    child: Child,
    banner: Vec<String>,
}

impl Up {
    fn start(data_dir: &std::path::Path, port_offset: u16, env: &[(&str, String)]) -> Self {
        Self::start_with(data_dir, port_offset, env, &[])
    }

    fn start_with(data_dir: &std::path::Path, port_offset: u16, env: &[(&str, String)], args: &[&str]) -> Self {
        let started = Instant::now();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordermesh"));
        command
            .args(["up"])
            .args(args)
            .args(["--data-dir"])
            .arg(data_dir)
            .args(["--port-offset", &port_offset.to_string()])
            .env("RUST_LOG", "warn")
            .envs(grpc_addresses(port_offset))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start ordermesh up");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        loop {
            let line = receiver
                .recv_timeout(Duration::from_secs(120))
                .expect("ordermesh up prints its banner");
            let done = line.starts_with("Demo customers:");
            banner.push(line);
            if done {
                break;
            }
        }
        println!(
            "ordermesh up: ready {:.2} s after start",
            started.elapsed().as_secs_f64()
        );
        Self { child, banner }
    }

    fn line(&self, prefix: &str) -> String {
        self.banner
            .iter()
            .find(|l| l.trim_start().starts_with(prefix))
            .cloned()
            .unwrap_or_default()
    }

    /// Graceful stop (SIGTERM), as Ctrl-C would.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "ordermesh up exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ordermesh up did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The six services, in the order of [`grpc_port`].
const SERVICES: [&str; 6] = ["PRODUCT", "CUSTOMER", "ORDER", "PAYMENT", "AUDIT", "NOTIFICATION"];

/// The gRPC port of `SERVICES[index]` for `offset`. Below Linux's ephemeral range (32768–60999):
/// at the default ports (50051 + offset) an outgoing connection of a test running beside this
/// one can take a port first.
fn grpc_port(offset: u16, index: u16) -> u16 {
    20000 + offset + index
}

/// `<SERVICE>_ADDR` of the six services (explicit addresses win over `--port-offset`).
fn grpc_addresses(offset: u16) -> Vec<(String, String)> {
    (0u16..)
        .zip(SERVICES)
        .map(|(index, service)| {
            (
                format!("{service}_ADDR"),
                format!("0.0.0.0:{}", grpc_port(offset, index)),
            )
        })
        .collect()
}

/// A port offset unlikely to collide with a developer's own `ordermesh up` or another test run.
fn port_offset() -> u16 {
    2000 + (std::process::id() % 500) as u16 * 10
}

fn python() -> String {
    std::env::var("ORDERMESH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn reflection_check(port: u16, service: &str, method: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/reflection_check.py");
    let output = Command::new(python())
        .args([
            script,
            &format!("127.0.0.1:{port}"),
            "--service",
            service,
            "--method",
            method,
        ])
        .output()
        .expect("run python (ORDERMESH_PYTHON must have grpcio; scripts/test sets it)");
    assert!(
        output.status.success(),
        "reflection check failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn quickstart_on_the_embedded_profile_and_a_restart_that_keeps_the_data() {
    let data = tempfile::tempdir().unwrap();
    let offset = port_offset();
    let up = Up::start(data.path(), offset, &[]);
    assert!(
        up.line("BFF").contains(&format!("{}", 8080 + offset)),
        "{:?}",
        up.banner
    );
    let demo = up.line("Demo customers:");

    // `grpcurl -plaintext localhost:50051 list` and `describe`, with a reflection client.
    reflection_check(
        grpc_port(offset, 0),
        "ordermesh.product.v1.ProductService",
        "ordermesh.product.v1.ProductService.GetProduct=ordermesh.product.v1.GetProductRequest",
    );
    reflection_check(
        grpc_port(offset, 2),
        "ordermesh.order.v1.OrderService",
        "ordermesh.order.v1.OrderService.PlaceOrder=ordermesh.order.v1.PlaceOrderRequest",
    );

    // `ordermesh token client --subject demo-client-1`, then the README's curl commands.
    let token = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .args(["token", "client", "--subject", "demo-client-1", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let order_id = place_and_confirm(8080 + offset, &token);
    readme_grpcurl_commands_work(data.path(), offset);
    dead_letters_with_the_cli(data.path(), offset);
    up.stop();

    // Housekeeping on the same data, as the timer and the CronJobs run it.
    let housekeeping = |job: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
            .args(["housekeeping", job, "--data-dir"])
            .arg(data.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(housekeeping("list").contains("inactive-customers"));
    let outbox = housekeeping("outbox");
    assert_eq!(
        outbox.lines().filter(|l| l.contains(" outbox: ")).count(),
        6,
        "{outbox}"
    );
    assert!(housekeeping("maintenance").contains("audit-svc maintenance: 1 databases vacuumed"));

    // Restart on the same data: the demo data is found, not created again, the order is kept.
    let again = Up::start(data.path(), offset, &[]);
    assert_eq!(again.line("Demo customers:"), demo);
    let order = http(
        8080 + offset,
        &token,
        reqwest::Method::GET,
        &format!("/api/v1/orders/{order_id}"),
        None,
    );
    assert_eq!(order["status"], "confirmed", "{order}");
    again.stop();
}

/// The README's grpcurl commands (those in code blocks that start with `grpcurl -plaintext`),
/// run by bash with the real grpcurl as printed, the ports moved to this test's. The one that
/// shows a refused call must print its field violation decoded; the others must succeed.
fn readme_grpcurl_commands_work(data_dir: &std::path::Path, offset: u16) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut commands = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("grpcurl -plaintext") {
            continue;
        }
        let mut command = line.to_owned();
        while command.ends_with('\\') {
            command.pop();
            command.push_str(lines.next().expect("a continued line"));
        }
        commands.push(command);
    }
    assert!(commands.len() >= 6, "{commands:?}");
    let admin = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .args(["token", "employee", "--role", "admin", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(admin.status.success());
    let grpcurl = std::env::var("ORDERMESH_GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned());
    for command in commands {
        let mut moved = command.clone();
        for index in 0..6u16 {
            moved = moved.replace(
                &format!("localhost:{}", 50051 + index),
                &format!("127.0.0.1:{}", grpc_port(offset, index)),
            );
        }
        let output = Command::new("bash")
            .args([
                "-c",
                &format!("grpcurl() {{ \"$GRPCURL\" -max-time 10 \"$@\"; }}\n{moved}"),
            ])
            .env("GRPCURL", &grpcurl)
            .env("ADMIN_TOKEN", String::from_utf8(admin.stdout.clone()).unwrap().trim())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        if command.contains("\"order_id\": \"42\"") {
            assert!(!output.status.success(), "{command}: {stdout}");
            assert!(
                stderr.contains("google.rpc.BadRequest")
                    && stderr.contains("order_id")
                    && !stderr.contains("is not recognized"),
                "{command}: the violation is printed decoded: {stderr}"
            );
        } else {
            assert!(output.status.success(), "{command}: {stderr}");
        }
    }
}

/// `ordermesh dlq` against the running embedded platform: an undecodable event, put in
/// product-svc's outbox as a broken producer would, is dead-lettered by every consumer of its
/// topic; the CLI lists the letters and discards one with a reason.
fn dead_letters_with_the_cli(data_dir: &std::path::Path, offset: u16) {
    let dlq = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
            .arg("dlq")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .envs((0u16..).zip(SERVICES).map(|(index, service)| {
                (
                    format!("{service}_SVC_URL"),
                    format!("http://127.0.0.1:{}", grpc_port(offset, index)),
                )
            }))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = dlq(&["list"]);
    assert!(ok && stdout.contains("no dead letters"), "{stdout}{stderr}");

    let poison = uuid::Uuid::now_v7();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}/product.db", data_dir.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO event_outbox (event_id, topic, event_type, aggregate_id, source, correlation_id, payload, occur_time) \
             VALUES (?, 'order-events', 'ordermesh.events.v1.OrderPlaced', 'poisoned', 'product-svc', 'corr-poison', X'FFFFFFFF', ?)",
        )
        .bind(poison.to_string())
        .bind(chrono::Utc::now().to_rfc3339())
        .execute(&pool)
        .await
        .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let (ok, stdout, stderr) = dlq(&["list"]);
        assert!(ok, "{stderr}");
        // Every service consumes order-events.
        if stdout.matches(&poison.to_string()).count() == 6 {
            break stdout;
        }
        assert!(Instant::now() < deadline, "listed so far: {stdout}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let first = listed
        .lines()
        .find(|line| line.contains(&poison.to_string()))
        .and_then(|line| line.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (ok, stdout, stderr) = dlq(&["discard", &first, "--reason", "poisoned by the quickstart test"]);
    assert!(
        ok && stdout.contains(&format!("discarded dead letter {first}")),
        "{stdout}{stderr}"
    );
    let (_, stdout, _) = dlq(&["list"]);
    assert_eq!(stdout.matches(&poison.to_string()).count(), 5, "{stdout}");
    let (ok, _, stderr) = dlq(&["replay", &first]);
    assert!(!ok && stderr.contains("no dead letter"), "{stderr}");
}

/// One HTTP call to the BFF; panics unless it succeeds. Returns the JSON body.
fn http(
    port: u16,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    ordermesh_platform::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .request(method, format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let json: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {json}");
        json
    })
}

/// The README's "place an order" steps: watch the SSE stream, find a product, POST the order
/// (202 + Location), follow it to CONFIRMED, and see the CONFIRMED notification arrive on the
/// stream. Returns the order id.
fn place_and_confirm(port: u16, token: &str) -> String {
    ordermesh_platform::install_crypto_provider();
    place_and_confirm_at(&format!("http://127.0.0.1:{port}"), reqwest::Client::new(), token)
}

/// [`place_and_confirm`] at `base` (`http://…` or `https://…`) with `client`.
fn place_and_confirm_at(base: &str, client: reqwest::Client, token: &str) -> String {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut stream = client
            .get(format!("{base}/api/v1/notifications/stream"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        assert!(
            stream.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let received = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = received.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(chunk)) = stream.chunk().await {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk));
            }
        });

        let call = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
            let mut request = client.request(method, format!("{base}{path}")).bearer_auth(token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let location = response
                    .headers()
                    .get("location")
                    .map(|v| v.to_str().unwrap().to_owned());
                let json: serde_json::Value = response.json().await.unwrap_or_default();
                assert!(status.is_success(), "{path}: {status} {json}");
                (status, location, json)
            }
        };
        let (_, _, products) = call(reqwest::Method::GET, "/api/v1/products/search?q=kettle".into(), None).await;
        let product = products["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["sku"] == "DEMO-KETTLE")
            .unwrap_or_else(|| panic!("demo kettle in {products}"))
            .clone();
        let order = serde_json::json!({
            "items": [{"productId": product["id"], "quantity": 1}],
            "shippingAddress": {"line1": "1 Demo Street", "city": "Berlin", "postalCode": "10115", "countryCode": "DE"},
            "paymentMethodToken": "tok_approved",
        });
        let (status, location, placed) = call(reqwest::Method::POST, "/api/v1/orders".into(), Some(order)).await;
        assert_eq!(status, 202);
        let id = placed["id"].as_str().unwrap().to_owned();
        let location = location.expect("Location header");
        assert!(location.ends_with(&id), "{location}");

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, _, current) = call(reqwest::Method::GET, location.clone(), None).await;
            if current["status"] == "confirmed" {
                break;
            }
            assert!(Instant::now() < deadline, "order not confirmed: {current}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            let text = received.lock().unwrap().clone();
            let confirmed_event = text
                .split("\n\n")
                .any(|event| event.contains("id:") && event.contains(&id) && event.contains("CONFIRMED"));
            if confirmed_event {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no CONFIRMED notification on the stream:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        reader.abort();
        id
    })
}

#[test]
fn quickstart_on_the_production_profile() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime
        .block_on(ordermesh_platform::testing::TestDatabase::postgres())
        .unwrap();
    let events = ordermesh_platform::events::EventsConfig::isolated();
    let env = [
        ("DATABASE_URL", database.url().to_owned()),
        ("NATS_URL", "nats://127.0.0.1:4222".to_owned()),
        ("REDIS_URL", ordermesh_platform::testing::redis_url()),
        ("NATS_SUBJECT_PREFIX", events.subject_prefix.clone()),
        ("NATS_STREAM_PREFIX", events.stream_prefix.clone()),
    ];
    let data = tempfile::tempdir().unwrap();
    let offset = port_offset() + 5000;
    // An explicit BFF_ADDR wins over the port offset, as the services' addresses do.
    let bff_port = grpc_port(offset, 80);
    let env = [env.as_slice(), &[("BFF_ADDR", format!("127.0.0.1:{bff_port}"))]].concat();
    let up = Up::start(data.path(), offset, &env);
    assert!(up.line("BFF").ends_with(&format!(":{bff_port}")), "{:?}", up.banner);
    reflection_check(
        grpc_port(offset, 1),
        "ordermesh.customer.v1.CustomerService",
        "ordermesh.customer.v1.CustomerService.GetCustomer=ordermesh.customer.v1.GetCustomerRequest",
    );
    let demo = up.line("Demo customers:");
    let token = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .args(["token", "client", "--subject", "demo-client-2", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    place_and_confirm(bff_port, String::from_utf8(token.stdout).unwrap().trim());
    up.stop();
    let again = Up::start(data.path(), offset, &env);
    assert_eq!(again.line("Demo customers:"), demo, "PostgreSQL kept the demo data");
    again.stop();
    runtime.block_on(async {
        let bus = ordermesh_platform::events::NatsBus::connect_only("nats://127.0.0.1:4222", events)
            .await
            .unwrap();
        bus.delete_streams().await.unwrap();
    });
}

/// The real grpcurl (`ORDERMESH_GRPCURL`, installed by scripts/peers.sh) with `args`:
/// (succeeded, stdout and stderr).
fn grpcurl(args: &[&str]) -> (bool, String) {
    let binary = std::env::var("ORDERMESH_GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned());
    run_peer(
        Command::new(&binary).args(["-max-time", "10"]).args(args),
        "scripts/test sets ORDERMESH_GRPCURL",
    )
}

#[test]
fn quickstart_over_mutual_tls_with_grpcurl_as_the_operator() {
    let data = tempfile::tempdir().unwrap();
    let offset = port_offset() + 2500;
    let up = Up::start_with(data.path(), offset, &[], &["--tls"]);
    let bff_port = 8080 + offset;
    assert!(
        up.line("BFF").contains(&format!("https://localhost:{bff_port}")),
        "{:?}",
        up.banner
    );
    let tls = data.path().join("tls");
    let file = |name: &str| tls.join(name).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("ops.pem"), file("ops-key.pem"));
    let product = format!("localhost:{}", grpc_port(offset, 0));
    let as_ops = |rest: &[&str]| {
        let args = [
            &["-cacert", ca.as_str(), "-cert", cert.as_str(), "-key", key.as_str()],
            rest,
        ]
        .concat();
        grpcurl(&args)
    };

    // The operator lists and describes a service over mutual TLS with the dev CA and `ops`.
    let (ok, listed) = as_ops(&[product.as_str(), "list"]);
    assert!(ok && listed.contains("ordermesh.product.v1.ProductService"), "{listed}");
    let (ok, described) = as_ops(&[product.as_str(), "describe", "ordermesh.product.v1.ProductService"]);
    assert!(ok && described.contains("rpc GetProduct"), "{described}");

    // Refused without a certificate: in plaintext, and over TLS without a client certificate.
    let (ok, plaintext) = grpcurl(&["-plaintext", product.as_str(), "list"]);
    assert!(!ok, "a plaintext call was served: {plaintext}");
    let (ok, anonymous) = grpcurl(&["-cacert", ca.as_str(), product.as_str(), "list"]);
    assert!(!ok, "a call without a client certificate was served: {anonymous}");

    // `ops` may read with a user's token, and may not write whatever the token says.
    let admin = up
        .line("ADMIN_TOKEN=")
        .trim()
        .trim_start_matches("ADMIN_TOKEN=")
        .to_owned();
    let bearer = format!("authorization: Bearer {admin}");
    let (ok, found) = as_ops(&[
        "-H",
        bearer.as_str(),
        "-d",
        r#"{"query": "kettle"}"#,
        product.as_str(),
        "ordermesh.product.v1.ProductService/SearchProducts",
    ]);
    assert!(ok && found.contains("DEMO-KETTLE"), "{found}");
    let (ok, refused) = as_ops(&[
        "-H",
        bearer.as_str(),
        "-d",
        r#"{"name": "Not for operators"}"#,
        product.as_str(),
        "ordermesh.product.v1.ProductService/CreateCategory",
    ]);
    assert!(!ok && refused.contains("PermissionDenied"), "{refused}");
    assert!(refused.contains("ops may not call"), "{refused}");

    // The README's order, over HTTPS to the BFF and mutual TLS behind it, to CONFIRMED.
    ordermesh_platform::install_crypto_provider();
    let pem = std::fs::read(tls.join("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let token = up
        .line("CLIENT_TOKEN=")
        .trim()
        .trim_start_matches("CLIENT_TOKEN=")
        .to_owned();
    place_and_confirm_at(&format!("https://localhost:{bff_port}"), client, &token);
    up.stop();
}

#[test]
fn the_production_profile_over_tls_only_postgres_nats_and_redis() {
    use ordermesh_platform::testing::servers::{TlsFiles, nats_tls_only, postgres_ssl_only, redis_tls_only};
    let tls = TlsFiles::generate().unwrap();
    let postgres = postgres_ssl_only(&tls).unwrap();
    let nats = nats_tls_only(&tls).unwrap();
    let redis = redis_tls_only(&tls).unwrap();
    let ca = tls.ca.display().to_string();
    let database_url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        postgres.port
    );

    // Each server speaks TLS only: the same servers refuse plaintext.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let plain = format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            postgres.port
        );
        let refused = sqlx::PgConnection::connect(&plain).await.unwrap_err();
        assert!(refused.to_string().contains("no encryption"), "{refused}");
        sqlx::PgConnection::connect(&database_url)
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        let plain_nats = async_nats::connect(format!("nats://{}", nats.addr())).await;
        assert!(
            plain_nats.is_err(),
            "NATS took a plaintext client without a certificate"
        );
    });

    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("NATS_URL", format!("tls://{}", nats.addr())),
        ("NATS_CA_FILE", ca.clone()),
        ("NATS_CLIENT_CERT_FILE", tls.client_cert.display().to_string()),
        ("NATS_CLIENT_KEY_FILE", tls.client_key.display().to_string()),
        ("REDIS_URL", format!("rediss://{}", redis.addr())),
        ("REDIS_CA_FILE", ca.clone()),
    ];
    let data = tempfile::tempdir().unwrap();
    let offset = port_offset() + 1250;
    let up = Up::start(data.path(), offset, &env);
    let token = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .args(["token", "client", "--subject", "demo-client-1", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    place_and_confirm(8080 + offset, String::from_utf8(token.stdout).unwrap().trim());
    up.stop();

    // A URL that asks for TLS without its CA is refused at start-up, naming the variable.
    let without_ca = Command::new(env!("CARGO_BIN_EXE_ordermesh"))
        .args(["up", "--ephemeral", "--port-offset", &(offset + 1).to_string()])
        .env("REDIS_URL", format!("rediss://{}", redis.addr()))
        .env("DATABASE_URL", &database_url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&without_ca.stderr);
    assert!(
        !without_ca.status.success() && stderr.contains("REDIS_CA_FILE"),
        "{stderr}"
    );
}
