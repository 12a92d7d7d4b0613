//! `deploy/` and the `Containerfile` against Kubernetes' schemas and against the code: every
//! overlay renders and validates; every workload's probes name a service it serves and its
//! ports are the ones the code listens on; every variable the manifests set (Deployments and
//! housekeeping CronJobs) is one the code reads, with a value the code accepts, and every file
//! it names is mounted; every housekeeping job of every service has exactly one CronJob, which
//! runs as its service without a sidecar and is reachable by no one; the ServiceAccounts are
//! exactly the workloads istio/ names; and the Containerfile builds every binary and runs as the
//! Deployments' user.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ordermesh::housekeeping::{archive_dir, jobs_of, service_config};
use ordermesh::mesh::{NAMESPACE, port};
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::mesh::contracts;
use ordermesh_platform::{Env, ServiceConfig};
use serde_json::Value;

/// The Kubernetes version the manifests are validated for (README: "Versions written against").
const KUBERNETES: &str = "1.32.0";
const OVERLAYS: [&str; 3] = ["dev", "staging", "production"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kustomize(dir: &Path) -> String {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl (kustomize is built in)");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn parse(rendered: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
        .filter(|value: &Value| !value.is_null())
        .collect()
}

fn overlay(name: &str) -> Vec<Value> {
    parse(&kustomize(&repo().join("deploy/overlays").join(name)))
}

fn validate(rendered: &str) -> (bool, String) {
    let python = std::env::var("ORDERMESH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = repo().join("tests/peers/validate_k8s.py");
    let mut child = Command::new(&python)
        .arg(script)
        .args(["--kubernetes-version", KUBERNETES, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python with kubernetes-validate (scripts/test sets ORDERMESH_PYTHON)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(rendered.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_schemas() {
    for dir in OVERLAYS
        .map(|o| format!("deploy/overlays/{o}"))
        .into_iter()
        .chain(["deploy/backing".to_owned()])
    {
        let rendered = kustomize(&repo().join(&dir));
        let (ok, report) = validate(&rendered);
        assert!(ok, "{dir}:\n{report}");
        assert!(
            report.lines().any(|l| l.starts_with("ok ")),
            "{dir}: nothing validated\n{report}"
        );
    }
    // The check can fail: a broken Deployment is refused.
    let broken = kustomize(&repo().join("tests/fixtures/k8s-broken"));
    let (ok, report) = validate(&broken);
    assert!(!ok && report.contains("FAIL Deployment/"), "{report}");
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// A container's environment as the kubelet would build it: literal values and ConfigMap
/// values as they are; Secret values unknown (`None`).
fn environment(objects: &[Value], container: &Value) -> BTreeMap<String, Option<String>> {
    let mut env = BTreeMap::new();
    let config_map = |name: &str| -> serde_json::Map<String, Value> {
        named(objects, "ConfigMap", name)
            .unwrap_or_else(|| panic!("ConfigMap {name} is referenced but not rendered"))["data"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    for source in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(name) = source["configMapRef"]["name"].as_str() {
            for (key, value) in config_map(name) {
                env.insert(key, value.as_str().map(str::to_owned));
            }
        }
        assert!(
            source["secretRef"].is_null(),
            "a whole Secret as environment hides its names"
        );
    }
    for variable in container["env"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap().to_owned();
        let value = if let Some(value) = variable["value"].as_str() {
            Some(value.to_owned())
        } else if let Some(reference) = variable["valueFrom"]["configMapKeyRef"].as_object() {
            let map = config_map(reference["name"].as_str().unwrap());
            map.get(reference["key"].as_str().unwrap())
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        } else {
            None
        };
        env.insert(name, value);
    }
    env
}

/// The Deployments of `objects` by workload, with their (first) container.
fn workloads(objects: &[Value]) -> Vec<(Workload, &Value, &Value)> {
    of_kind(objects, "Deployment")
        .into_iter()
        .map(|deployment| {
            let app = deployment["spec"]["template"]["metadata"]["labels"]["app"]
                .as_str()
                .expect("app label");
            let workload: Workload = app.parse().unwrap_or_else(|e| panic!("Deployment {app}: {e}"));
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            (workload, deployment, container)
        })
        .collect()
}

/// A probe's port: a number, or the name of one of the container's ports.
fn container_port(container: &Value, port: &Value) -> u16 {
    let number = match port.as_str() {
        Some(name) => container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64(),
        None => port.as_u64(),
    };
    number.and_then(|n| u16::try_from(n).ok()).expect("a port")
}

fn addr_port(value: &str) -> u16 {
    value.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn every_workload_serves_what_its_probes_and_ports_say() {
    for name in OVERLAYS {
        let objects = overlay(name);
        let deployed: BTreeSet<Workload> = workloads(&objects).iter().map(|(w, ..)| *w).collect();
        for workload in Workload::SERVICES
            .into_iter()
            .chain([Workload::BffExternal, Workload::BffInternal])
        {
            assert!(deployed.contains(&workload), "{name}: no Deployment of {workload}");
        }
        for (workload, deployment, container) in workloads(&objects) {
            if workload == Workload::Ops {
                continue;
            }
            let env = environment(&objects, container);
            let listen = port(workload);
            let ports: Vec<u64> = container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["containerPort"].as_u64().unwrap())
                .collect();
            // The API, then the scrape endpoint (METRICS_ADDR), which the pod's annotations name.
            let metrics = addr_port(env["METRICS_ADDR"].as_deref().expect("METRICS_ADDR"));
            assert_eq!(ports, [u64::from(listen), u64::from(metrics)], "{name}/{workload}");
            assert_eq!(container_port(container, &Value::from("metrics")), metrics);
            let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}/{workload}");
            assert_eq!(
                annotations["prometheus.io/port"],
                metrics.to_string(),
                "{name}/{workload}"
            );
            assert_eq!(annotations["prometheus.io/path"], "/metrics", "{name}/{workload}");
            let service = named(&objects, "Service", workload.name()).expect("a Service");
            let service_port = &service["spec"]["ports"][0];
            assert_eq!(
                service_port["targetPort"].as_u64(),
                Some(u64::from(listen)),
                "{name}/{workload}"
            );
            let probes = ["startupProbe", "livenessProbe", "readinessProbe"].map(|p| &container[p]);
            if Workload::SERVICES.contains(&workload) {
                assert_eq!(
                    container["command"][0],
                    workload.name(),
                    "{name}: the binary of {workload}"
                );
                let addr = env["GRPC_ADDR"].as_deref().expect("GRPC_ADDR");
                assert_eq!(addr_port(addr), listen, "{name}/{workload}: GRPC_ADDR");
                assert_eq!(service_port["appProtocol"], "grpc", "{name}/{workload}");
                // Health reports "" and each of the services the workload serves.
                let served: BTreeSet<String> = contracts::methods()
                    .iter()
                    .filter(|m| workload.serves(&m.service))
                    .map(|m| m.service.clone())
                    .chain([String::new()])
                    .collect();
                for probe in probes {
                    let grpc = &probe["grpc"];
                    assert_eq!(
                        container_port(container, &grpc["port"]),
                        listen,
                        "{name}/{workload}: {probe}"
                    );
                    let asked = grpc["service"].as_str().unwrap_or_default();
                    assert!(
                        served.contains(asked),
                        "{name}/{workload} probes {asked:?}, which it does not serve"
                    );
                }
                assert_ne!(
                    probes[2]["grpc"]["service"], "",
                    "{name}/{workload}: readiness names its service"
                );
            } else {
                assert_eq!(container["command"][0], "bff", "{name}: the binary of {workload}");
                let addr = env["BFF_ADDR"].as_deref().expect("BFF_ADDR");
                assert_eq!(addr_port(addr), listen, "{name}/{workload}: BFF_ADDR");
                let surface = env["BFF_SURFACE"].as_deref().expect("BFF_SURFACE");
                let config = bff::BffConfig {
                    surface: bff::Surface::parse(surface).expect("a surface"),
                    ..bff::BffConfig::new(
                        Default::default(),
                        ordermesh_platform::PeerUrls::from_env(&Env::default()).unwrap(),
                    )
                };
                assert_eq!(
                    config.workload(),
                    workload,
                    "{name}: {workload} serves surface {surface}"
                );
                for probe in probes.iter().filter(|p| !p.is_null()) {
                    let path = probe["httpGet"]["path"].as_str().unwrap_or_default();
                    assert!(
                        ["/healthz", "/readyz"].contains(&path),
                        "{name}/{workload}: probe {path}"
                    );
                    assert_eq!(
                        container_port(container, &probe["httpGet"]["port"]),
                        listen,
                        "{name}/{workload}"
                    );
                }
            }
            let account = deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str();
            assert_eq!(
                account,
                Some(workload.name()),
                "{name}: {workload} runs as its own ServiceAccount"
            );
        }
    }
}

/// A temporary CA file, for variables that name a file the code reads at start-up.
fn ca_file(dir: &Path) -> String {
    ordermesh_platform::install_crypto_provider();
    let ca = ordermesh_platform::mesh::dev_ca::DevCa::generate("cluster.local", NAMESPACE).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca.ca_pem()).unwrap();
    path.display().to_string()
}

/// What a Secret holds, in the form README's table gives.
fn secret_stand_in(name: &str, ca: &str) -> String {
    match name {
        "DATABASE_URL" => format!("postgres://svc:pw@db:5432/ordermesh?sslmode=verify-full&sslrootcert={ca}"),
        "NATS_URL" => "tls://ordermesh:pw@nats:4222".to_owned(),
        "REDIS_URL" => "rediss://:pw@redis:6379".to_owned(),
        _ => "secret".to_owned(),
    }
}

/// Reads `env` as `workload`'s binary does at start-up.
fn read_configuration(workload: Workload, env: &Env) -> anyhow::Result<()> {
    match workload {
        Workload::BffExternal | Workload::BffInternal => {
            bff::listen_addr(env)?;
            ordermesh_platform::telemetry::TelemetryConfig::from_env(env, "bff")?;
            bff::BffConfig::from_env(env)?;
        }
        service => {
            let short = service.name().trim_end_matches("-svc");
            let short: &'static str = Box::leak(short.to_owned().into_boxed_str());
            ServiceConfig::from_env(env, short, port(service))?;
            match service {
                Workload::Payment => {
                    payment_svc::gateway::from_env(env)?;
                }
                Workload::Notification => {
                    notification_svc::Options::from_env(env)?;
                }
                Workload::Product => {
                    product_svc::low_stock_from_env(env)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Reads `env` as `ordermesh housekeeping <job> --service <service>` does: the service's
/// configuration, then its jobs'.
fn read_housekeeping(service: Workload, env: &Env) -> anyhow::Result<()> {
    let data_dir = std::path::Path::new("data");
    let config = service_config(env, service.service(), port(service), data_dir)?;
    jobs_of(service.service(), &config, &archive_dir(env, data_dir));
    Ok(())
}

/// `container`'s environment against the code: `read` (the container's binary reading its
/// configuration) accepts it, with Secrets stood in by values of the documented form and files
/// by a CA; it asks for every variable a ConfigMap or literal sets; every file it names is in a
/// volume the container mounts.
fn check_environment(
    what: &str,
    objects: &[Value],
    container: &Value,
    ca: &str,
    read: impl FnOnce(&Env) -> anyhow::Result<()>,
) {
    let set = environment(objects, container);
    let pairs: Vec<(String, String)> = set
        .iter()
        .map(|(key, value)| {
            let value = match value {
                // A file mounted into the pod: here, a CA the code can read.
                Some(path) if path.starts_with('/') && key != "SERVICE_TOKEN_FILE" => ca.to_owned(),
                Some(value) => value.clone(),
                None => secret_stand_in(key, ca),
            };
            (key.clone(), value)
        })
        .collect();
    let env = Env::from_pairs(pairs);
    if let Err(error) = read(&env) {
        panic!("{what}: the code refuses the manifests' configuration: {error:#}");
    }
    let asked = env.asked();
    // Secrets may be optional (a gateway key without a gateway); configuration may not.
    let unread: Vec<&String> = set
        .iter()
        .filter(|(key, value)| value.is_some() && !asked.contains(*key))
        .map(|(key, _)| key)
        .collect();
    assert!(
        unread.is_empty(),
        "{what} sets variables the code never reads: {unread:?}"
    );
    let mounts: Vec<&str> = items(&container["volumeMounts"])
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    for (key, path) in set.iter().filter_map(|(k, v)| Some((k, v.as_deref()?))) {
        assert!(
            !path.starts_with('/') || mounts.iter().any(|m| path.starts_with(m)),
            "{what}: {key}={path} is in no volume the container mounts"
        );
    }
}

#[test]
fn every_variable_the_manifests_set_is_one_the_code_reads_with_a_value_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(dir.path());
    for name in OVERLAYS {
        let objects = overlay(name);
        for (workload, _, container) in workloads(&objects) {
            if workload != Workload::Ops {
                let read = |env: &Env| read_configuration(workload, env);
                check_environment(&format!("{name}/{workload}"), &objects, container, &ca, read);
            }
        }
        for (service, job, cron) in cronjobs(&objects) {
            let container = &pod_of(cron)["containers"][0];
            let read = |env: &Env| read_housekeeping(service, env);
            check_environment(&format!("{name}/{service} {job}"), &objects, container, &ca, read);
        }
    }
}

/// The housekeeping CronJobs of `objects`, by the service and job their command
/// (`ordermesh housekeeping <job> --service <service>`) names.
fn cronjobs(objects: &[Value]) -> Vec<(Workload, String, &Value)> {
    of_kind(objects, "CronJob")
        .into_iter()
        .map(|cron| {
            let name = &cron["metadata"]["name"];
            let command: Vec<&str> = items(&pod_of(cron)["containers"][0]["command"])
                .filter_map(Value::as_str)
                .collect();
            let &["ordermesh", "housekeeping", job, "--service", service] = command.as_slice() else {
                panic!("CronJob {name} runs {command:?}, not `ordermesh housekeeping <job> --service <service>`");
            };
            let service = Workload::of_service(service)
                .unwrap_or_else(|| panic!("CronJob {name}: --service {service} is no service"));
            (service, job.to_owned(), cron)
        })
        .collect()
}

/// The pod spec of a CronJob's jobs.
fn pod_of(cron: &Value) -> &Value {
    &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
}

/// The elements of a YAML list; none for an absent one.
fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list.as_array().into_iter().flatten()
}

/// Whether a label selector (present; `matchLabels`, its only form in deploy/) selects a pod
/// labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.is_object()
        && (selector["matchLabels"].as_object().into_iter().flatten()).all(|(key, value)| &labels[key] == value)
}

#[test]
fn every_housekeeping_job_has_one_cronjob_which_runs_as_its_service_out_of_reach() {
    // Every job of every service, as `ordermesh housekeeping` lists them.
    let jobs: BTreeSet<(Workload, String)> = Workload::SERVICES
        .into_iter()
        .flat_map(|service| {
            let env = Env::default();
            let config = ServiceConfig::from_env(&env, service.service(), port(service)).unwrap();
            jobs_of(service.service(), &config, std::path::Path::new("archive"))
                .iter()
                .map(|job| (service, job.name().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    for name in OVERLAYS {
        let objects = overlay(name);
        let cronjobs = cronjobs(&objects);
        let mut scheduled: BTreeMap<(Workload, String), usize> = BTreeMap::new();
        for (service, job, _) in &cronjobs {
            *scheduled.entry((*service, job.clone())).or_default() += 1;
        }
        for job in &jobs {
            assert_eq!(scheduled.get(job), Some(&1), "{name}: CronJobs of {job:?}");
        }
        for job in scheduled.keys() {
            assert!(jobs.contains(job), "{name}: a CronJob runs {job:?}, which is no job");
        }
        let policies = of_kind(&objects, "NetworkPolicy");
        for (service, job, cron) in cronjobs {
            let what = format!("{name}/{service} {job}");
            assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid", "{what}");
            let pod = pod_of(cron);
            assert_eq!(pod["serviceAccountName"], service.name(), "{what}");
            let labels = &cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
            assert_eq!(
                labels["sidecar.istio.io/inject"], "false",
                "{what}: a Job's pod has no sidecar"
            );
            // The hardening of the service's own pods.
            let deployment = named(&objects, "Deployment", service.name()).expect("a Deployment");
            let service_pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"], service_pod["securityContext"], "{what}");
            assert_eq!(
                pod["containers"][0]["securityContext"], service_pod["containers"][0]["securityContext"],
                "{what}"
            );
            // No ingress rule names the pod among its sources (the rules without sources, the
            // sidecars' health ports, are open to any); a policy selecting it lets it reach
            // PostgreSQL.
            for policy in &policies {
                let admits = items(&policy["spec"]["ingress"])
                    .flat_map(|rule| items(&rule["from"]))
                    .any(|from| from["namespaceSelector"].is_null() && selects(&from["podSelector"], labels));
                let policy = &policy["metadata"]["name"];
                assert!(!admits, "{what}: NetworkPolicy {policy} admits it");
            }
            let egress = policies
                .iter()
                .filter(|p| selects(&p["spec"]["podSelector"], labels))
                .flat_map(|p| items(&p["spec"]["egress"]));
            assert!(
                egress.flat_map(|rule| items(&rule["ports"])).any(|p| p["port"] == 5432),
                "{what}: no NetworkPolicy lets it reach PostgreSQL"
            );
        }
    }
}

/// The workloads istio/ names: as principals, as selected workloads, as Sidecars.
fn named_by_istio() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let prefix = format!("cluster.local/ns/{NAMESPACE}/sa/");
    for (_, text) in ordermesh::mesh::files() {
        for document in parse(&text) {
            let spec = &document["spec"];
            for rule in spec["rules"].as_array().into_iter().flatten() {
                for from in rule["from"].as_array().into_iter().flatten() {
                    for principal in from["source"]["principals"].as_array().into_iter().flatten() {
                        if let Some(account) = principal.as_str().and_then(|p| p.strip_prefix(&prefix)) {
                            names.insert(account.to_owned());
                        }
                    }
                }
            }
            for app in [
                &spec["selector"]["matchLabels"]["app"],
                &spec["workloadSelector"]["labels"]["app"],
            ] {
                if let Some(app) = app.as_str() {
                    names.insert(app.to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn the_service_accounts_are_exactly_the_workloads_istio_names() {
    let istio = named_by_istio();
    for name in OVERLAYS {
        let objects = overlay(name);
        let accounts: BTreeSet<String> = of_kind(&objects, "ServiceAccount")
            .into_iter()
            .filter(|a| a["metadata"]["namespace"] == NAMESPACE)
            .map(|a| a["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(accounts, istio, "{name}: ServiceAccounts against istio/'s workloads");
    }
}

#[test]
fn the_network_policies_admit_the_callers_of_the_call_graph() {
    let objects = overlay("production");
    for callee in Workload::SERVICES {
        let policy = of_kind(&objects, "NetworkPolicy")
            .into_iter()
            .find(|p| p["spec"]["podSelector"]["matchLabels"]["app"] == callee.name())
            .unwrap_or_else(|| panic!("a NetworkPolicy for {callee}"));
        let admitted: BTreeSet<String> = policy["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| {
                rule["ports"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["port"] == port(callee)))
            })
            .flat_map(|rule| rule["from"].as_array().cloned().unwrap_or_default())
            .filter_map(|from| from["podSelector"]["matchLabels"]["app"].as_str().map(str::to_owned))
            .collect();
        let callers: BTreeSet<String> = Workload::ALL
            .into_iter()
            .filter(|w| w.in_cluster())
            .filter(|caller| {
                ordermesh_platform::mesh::declared(*caller)
                    .iter()
                    .any(|c| c.callee == callee)
            })
            .map(|w| w.name().to_owned())
            .collect();
        assert_eq!(admitted, callers, "{callee}: the pods admitted to its port");
    }
}

#[test]
fn the_containerfile_builds_every_binary_and_runs_as_the_deployments_user() {
    let containerfile = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    // Every COPY source from the build context exists.
    for line in containerfile
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &words[..words.len() - 1] {
            assert!(
                repo().join(source).exists(),
                "Containerfile: COPY {source}: no such file"
            );
        }
    }
    // The build builds every binary target of the workspace.
    let metadata = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(repo())
        .output()
        .unwrap();
    let metadata: Value = serde_json::from_slice(&metadata.stdout).unwrap();
    let binaries: BTreeSet<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(binaries.len() >= 9, "{binaries:?}");
    assert!(
        containerfile.contains("cargo build --release --locked --workspace --bins"),
        "the image build must build every binary: {binaries:?}"
    );
    // Every binary a Deployment runs is in the image, and the image runs as their user.
    let user = containerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("a USER line");
    for name in OVERLAYS {
        let objects = overlay(name);
        for (workload, deployment, container) in workloads(&objects) {
            let pod = &deployment["spec"]["template"]["spec"];
            let context = &pod["securityContext"];
            let expected = format!("{}:{}", context["runAsUser"], context["runAsGroup"]);
            assert_eq!(user.trim(), expected, "{name}/{workload}");
            if workload != Workload::Ops {
                let binary = container["command"][0].as_str().unwrap();
                assert!(binaries.contains(binary), "{binary} is no binary of the workspace");
                assert!(
                    containerfile.contains(binary),
                    "{name}/{workload} runs {binary}, which the image does not copy"
                );
            }
        }
    }
}
