//! `istio/` against the code: it is what the call graph renders; its AuthorizationPolicies allow
//! every declared call for exactly its caller and nothing else; every path it names is an RPC of
//! the contracts; retries are configured on reads only; the proxies reach only what each
//! workload calls; and every object validates against Istio's own CRD schemas.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ordermesh::mesh::{DATA_NAMESPACE, NAMESPACE, TRUST_DOMAIN, files};
use ordermesh_platform::mesh::contracts::{self, Method};
use ordermesh_platform::mesh::{SpiffeId, Workload, declared};
use serde_json::Value;

use common::run_peer;

fn istio_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../istio")
}

/// Every YAML document under `istio/`, as JSON values.
fn documents() -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(istio_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    let mut documents = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    documents
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn selected_app(document: &Value) -> Option<&str> {
    document["spec"]["selector"]["matchLabels"]["app"].as_str()
}

fn principal(workload: Workload) -> String {
    SpiffeId::new(TRUST_DOMAIN, NAMESPACE, workload).principal()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().expect("a string").to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn istio_is_what_the_call_graph_renders() {
    for (name, rendered) in files() {
        let path = istio_dir().join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "istio/{name} differs from what the call graph renders: run `cargo run -- mesh render` and commit"
        );
    }
}

#[test]
fn every_declared_call_is_allowed_for_exactly_its_caller_and_nothing_else() {
    let documents = documents();
    let policies = of_kind(&documents, "AuthorizationPolicy");

    // Deny by default: a namespace-wide ALLOW policy without rules, and mTLS STRICT.
    let nothing = policies
        .iter()
        .find(|p| p["metadata"]["name"] == "allow-nothing")
        .expect("an allow-nothing policy");
    assert!(nothing["spec"].as_object().unwrap().is_empty(), "{nothing}");
    let peer = of_kind(&documents, "PeerAuthentication");
    assert_eq!(peer.len(), 1);
    assert!(peer[0]["spec"]["selector"].is_null(), "namespace-wide");
    assert_eq!(peer[0]["spec"]["mtls"]["mode"], "STRICT");
    assert!(peer[0]["spec"]["portLevelMtls"].is_null());
    assert!(
        policies
            .iter()
            .all(|p| p["spec"]["action"].is_null() || p["spec"]["action"] == "ALLOW")
    );

    for service in Workload::SERVICES {
        let for_service: Vec<&&Value> = policies
            .iter()
            .filter(|p| selected_app(p) == Some(service.name()))
            .collect();
        assert_eq!(for_service.len(), 1, "one policy selects {service}");
        let mut allowed = BTreeSet::new();
        for rule in for_service[0]["spec"]["rules"].as_array().unwrap() {
            let sources = rule["from"].as_array().expect("every rule names its callers");
            let tos = rule["to"].as_array().expect("every rule names its paths");
            for source in sources {
                let source = &source["source"];
                assert!(
                    source["notPrincipals"].is_null() && source["namespaces"].is_null(),
                    "{rule}"
                );
                let principals = strings(&source["principals"]);
                assert!(!principals.is_empty(), "a rule open to anyone on {service}: {rule}");
                for to in tos {
                    let operation = &to["operation"];
                    assert!(operation["notPaths"].is_null(), "{rule}");
                    let paths = strings(&operation["paths"]);
                    assert!(!paths.is_empty(), "a rule open to every path of {service}: {rule}");
                    for path in paths {
                        assert!(!path.contains('*'), "a wildcard path on {service}: {path}");
                        let known = contracts::method(&path).is_some()
                            || contracts::infrastructure_paths().contains(&path.as_str());
                        assert!(known, "{path} on {service} is no RPC of the contracts");
                        for principal in &principals {
                            allowed.insert((principal.clone(), path.clone()));
                        }
                    }
                }
            }
        }
        let expected: BTreeSet<(String, String)> = Workload::ALL
            .into_iter()
            .filter(|caller| caller.in_cluster())
            .flat_map(|caller| {
                declared(caller)
                    .into_iter()
                    .filter(move |call| call.callee == service)
                    .map(move |call| (principal(caller), call.path.to_owned()))
            })
            .collect();
        let missing: Vec<_> = expected.difference(&allowed).collect();
        let extra: Vec<_> = allowed.difference(&expected).collect();
        assert!(missing.is_empty(), "{service}: declared but not allowed: {missing:?}");
        assert!(extra.is_empty(), "{service}: allowed but never declared: {extra:?}");
    }
    let text: String = files().into_iter().map(|(_, t)| t).collect();
    assert!(
        !text.contains(Workload::DemoSeed.name()),
        "the demo seed is no workload of a cluster"
    );
}

#[test]
fn the_portals_need_a_verified_token_on_the_api() {
    let documents = documents();
    for (bff, issuer_host) in [
        (Workload::BffExternal, "ciamlogin.com"),
        (Workload::BffInternal, "login.microsoftonline.com"),
    ] {
        let authn = of_kind(&documents, "RequestAuthentication");
        let authn = authn
            .iter()
            .find(|d| selected_app(d) == Some(bff.name()))
            .expect("RequestAuthentication");
        let rule = &authn["spec"]["jwtRules"][0];
        assert!(rule["issuer"].as_str().unwrap().contains(issuer_host), "{rule}");
        let policies = of_kind(&documents, "AuthorizationPolicy");
        let policy = policies
            .iter()
            .find(|d| selected_app(d) == Some(bff.name()))
            .expect("policy");
        for rule in policy["spec"]["rules"].as_array().unwrap() {
            let source = &rule["from"][0]["source"];
            let operation = &rule["to"][0]["operation"];
            let paths = strings(&operation["paths"]);
            let methods = strings(&operation["methods"]);
            // Without a token: only the named open paths, or CORS preflights.
            if source["requestPrincipals"].is_null() {
                let open = [
                    "/healthz",
                    "/readyz",
                    "/api/v1/openapi.json",
                    "/api/v1/notifications/stream",
                ];
                assert!(
                    methods == ["OPTIONS"] || (methods == ["GET"] && paths.iter().all(|p| open.contains(&p.as_str()))),
                    "{rule}"
                );
            }
        }
    }
}

/// Why a VirtualService route may retry `method`, or why not.
fn retry_violations(service: &Value, methods: &[&Method]) -> Vec<String> {
    let routes = service["spec"]["http"].as_array().unwrap();
    let mut violations = Vec::new();
    for method in methods {
        let route = routes.iter().find(|route| match route["match"].as_array() {
            None => true,
            Some(matches) => matches.iter().any(|m| {
                let uri = &m["uri"];
                assert!(uri["regex"].is_null(), "regex matches are not checked: {m}");
                uri["exact"].as_str() == Some(&method.path)
                    || uri["prefix"].as_str().is_some_and(|p| method.path.starts_with(p))
            }),
        });
        let Some(route) = route else {
            violations.push(format!("{} is routed by no route", method.path));
            continue;
        };
        // Istio retries by default: every route must say.
        let Some(attempts) = route["retries"]["attempts"].as_u64() else {
            violations.push(format!(
                "{}: route {} leaves retries at Istio's default",
                method.path, route["name"]
            ));
            continue;
        };
        if attempts > 0 && (!method.read || method.streaming) {
            violations.push(format!(
                "{} is not a unary read but is retried {attempts} times",
                method.path
            ));
        }
    }
    violations
}

#[test]
fn no_retry_is_configured_on_an_rpc_that_is_not_a_read() {
    let documents = documents();
    let services = of_kind(&documents, "VirtualService");
    for workload in Workload::SERVICES {
        let host = format!("{}.{NAMESPACE}.svc.cluster.local", workload.name());
        let service = services
            .iter()
            .find(|s| strings(&s["spec"]["hosts"]) == [host.clone()])
            .unwrap_or_else(|| panic!("a VirtualService for {host}"));
        let methods: Vec<&Method> = contracts::methods()
            .iter()
            .filter(|m| workload.serves(&m.service))
            .collect();
        let violations = retry_violations(service, &methods);
        assert!(violations.is_empty(), "{violations:#?}");
        // The check can fail: the same service with its catch-all route retrying.
        let mut retrying = (*service).clone();
        let last = retrying["spec"]["http"].as_array_mut().unwrap().last_mut().unwrap();
        last["retries"]["attempts"] = 2.into();
        assert!(
            !retry_violations(&retrying, &methods).is_empty(),
            "{workload}: writes retried unnoticed"
        );
    }
    // Through the gateway nothing is retried: a POST of an order must reach the BFF once.
    for portal in services.iter().filter(|s| !s["spec"]["gateways"].is_null()) {
        for route in portal["spec"]["http"].as_array().unwrap() {
            assert_eq!(route["retries"]["attempts"], 0, "{route}");
        }
    }
}

#[test]
fn each_proxy_reaches_only_what_its_workload_calls() {
    let documents = documents();
    let sidecars = of_kind(&documents, "Sidecar");
    for workload in Workload::ALL.into_iter().filter(|w| w.in_cluster()) {
        let sidecar = sidecars
            .iter()
            .find(|s| s["spec"]["workloadSelector"]["labels"]["app"] == workload.name())
            .unwrap_or_else(|| panic!("a Sidecar for {workload}"));
        assert_eq!(sidecar["spec"]["outboundTrafficPolicy"]["mode"], "REGISTRY_ONLY");
        let hosts = strings(&sidecar["spec"]["egress"][0]["hosts"]);
        let in_namespace: BTreeSet<String> = hosts
            .iter()
            .filter_map(|h| h.strip_prefix("./"))
            .filter(|h| h.ends_with(&format!(".{NAMESPACE}.svc.cluster.local")))
            .map(str::to_owned)
            .collect();
        let called: BTreeSet<String> = declared(workload)
            .into_iter()
            .map(|c| format!("{}.{NAMESPACE}.svc.cluster.local", c.callee.name()))
            .collect();
        assert_eq!(in_namespace, called, "{workload}");
        let databases = hosts
            .iter()
            .any(|h| h.starts_with(&format!("{DATA_NAMESPACE}/ordermesh-pg")));
        assert_eq!(
            databases,
            Workload::SERVICES.contains(&workload),
            "{workload}: {hosts:?}"
        );
    }
}

fn validate_with_istio_schemas(path: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/validate_istio.js");
    let node_path = std::env::var("NODE_PATH").unwrap_or_else(|_| {
        format!(
            "{}/.cache/ordermesh/npm/node_modules",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    run_peer(
        Command::new("node").arg(script).arg(path).env("NODE_PATH", node_path),
        "scripts/test installs the validator's packages",
    )
}

#[test]
fn every_istio_object_validates_against_istios_crd_schemas() {
    let (ok, report) = validate_with_istio_schemas(&istio_dir());
    assert!(ok, "{report}");
    let checked = report.lines().filter(|l| l.starts_with("ok ")).count();
    let istio_objects = documents()
        .iter()
        .filter(|d| d["apiVersion"].as_str().is_some_and(|v| v.contains(".istio.io/")))
        .count();
    assert_eq!(checked, istio_objects, "{report}");

    // The check can fail: a fixture of broken objects is refused, each of them.
    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/istio-broken");
    let (ok, report) = validate_with_istio_schemas(&broken);
    assert!(!ok, "{report}");
    assert!(
        report.lines().filter(|l| l.starts_with("FAIL ")).count() >= 5,
        "{report}"
    );
    assert!(!report.lines().any(|l| l.starts_with("ok ")), "{report}");
}
