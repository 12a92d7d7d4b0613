//! `ordermesh mesh render`: the Istio resources of `istio/`, derived from the call graph
//! (`platform/src/mesh/graph.rs`) and the contracts (which RPCs are reads). Edit the graph, run
//! this, commit both; the tests compare `istio/` with the graph and with the calls the code
//! really makes.

use std::path::{Path, PathBuf};

use ordermesh_platform::mesh::contracts::{self, Method};
use ordermesh_platform::mesh::{SpiffeId, Workload, declared};
use serde_json::{Value, json};

/// The cluster the policy is written for. Deployments with other names patch them with
/// kustomize (see `istio/kustomization.yaml`).
pub const NAMESPACE: &str = "ordermesh";
pub const TRUST_DOMAIN: &str = "cluster.local";
/// Where PostgreSQL, NATS and Redis run (by their operators).
pub const DATA_NAMESPACE: &str = "ordermesh-data";
const INGRESS_GATEWAY: &str = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
const EXTERNAL_HOST: &str = "api.ordermesh.example";
const INTERNAL_HOST: &str = "staff-api.ordermesh.example";
/// The token issuers (Entra External ID for clients, Entra ID for employees): placeholders for
/// the tenant, patched per deployment.
const CLIENT_ISSUER: (&str, &str) = (
    "https://ordermesh.ciamlogin.com/00000000-0000-0000-0000-000000000000/v2.0",
    "https://ordermesh.ciamlogin.com/00000000-0000-0000-0000-000000000000/discovery/v2.0/keys",
);
const EMPLOYEE_ISSUER: (&str, &str) = (
    "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
    "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/discovery/v2.0/keys",
);
/// The hosts of the token issuers' key sets: clients', employees', and the cluster's OIDC issuer
/// of the services' own (projected ServiceAccount) tokens.
const ISSUER_HOSTS: [&str; 3] = [
    "ordermesh.ciamlogin.com",
    "login.microsoftonline.com",
    "westeurope.oic.prod-aks.azure.com",
];
const AUDIENCE: &str = "api://ordermesh";
const PAYMENT_GATEWAY_HOST: &str = "payments.gateway.example";

#[derive(Debug, clap::Subcommand)]
pub enum MeshCommand {
    /// Write the Istio resources derived from the call graph.
    Render {
        /// Directory to write into (its generated files are replaced).
        #[arg(long, default_value = "istio")]
        out: PathBuf,
    },
}

pub fn run(command: MeshCommand) -> anyhow::Result<()> {
    match command {
        MeshCommand::Render { out } => {
            write(&out)?;
            println!("wrote {} files to {}", files().len(), out.display());
            Ok(())
        }
    }
}

/// Writes every rendered file into `dir`.
pub fn write(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files() {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

const HEADER: &str = "# Rendered by `ordermesh mesh render` from the call graph in platform/src/mesh/graph.rs.\n\
                      # Do not edit: change the graph and render again (a test compares the two).\n";

/// `istio/`'s files: name and contents.
pub fn files() -> Vec<(&'static str, String)> {
    let documents: [(&str, Vec<Value>); 7] = [
        ("peer-authentication.yaml", vec![peer_authentication()]),
        ("authorization-policies.yaml", authorization_policies()),
        ("request-authentication.yaml", request_authentications()),
        ("destination-rules.yaml", destination_rules()),
        ("virtual-services.yaml", virtual_services()),
        ("gateway.yaml", gateway()),
        ("sidecars.yaml", sidecars()),
    ];
    let mut files: Vec<(&str, String)> = documents
        .into_iter()
        .map(|(name, docs)| {
            let body: Vec<String> = docs
                .iter()
                .map(|doc| serde_yaml::to_string(doc).expect("JSON values serialise as YAML"))
                .collect();
            (name, format!("{HEADER}---\n{}", body.join("---\n")))
        })
        .collect();
    let resources: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": resources,
    });
    files.push((
        "kustomization.yaml",
        format!("{HEADER}{}", serde_yaml::to_string(&kustomization).expect("serialises")),
    ));
    files
}

fn principal(workload: Workload) -> String {
    SpiffeId::new(TRUST_DOMAIN, NAMESPACE, workload).principal()
}

fn host(workload: Workload) -> String {
    format!("{}.{NAMESPACE}.svc.cluster.local", workload.name())
}

/// The port each workload listens on by default: the services' gRPC ports, the BFF's HTTP port.
pub fn port(workload: Workload) -> u16 {
    match workload {
        Workload::Product => product_svc::DEFAULT_PORT,
        Workload::Customer => customer_svc::DEFAULT_PORT,
        Workload::Order => order_svc::DEFAULT_PORT,
        Workload::Payment => payment_svc::DEFAULT_PORT,
        Workload::Audit => audit_svc::DEFAULT_PORT,
        Workload::Notification => notification_svc::DEFAULT_PORT,
        Workload::BffExternal | Workload::BffInternal | Workload::Ops | Workload::DemoSeed => bff::DEFAULT_PORT,
    }
}

fn metadata(name: &str) -> Value {
    json!({"name": name, "namespace": NAMESPACE})
}

fn selector(workload: Workload) -> Value {
    json!({"matchLabels": {"app": workload.name()}})
}

fn peer_authentication() -> Value {
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": metadata("default"),
        "spec": {"mtls": {"mode": "STRICT"}},
    })
}

/// Deny by default (an ALLOW policy without rules matches nothing), then per service exactly
/// the callers the graph declares, each with exactly its RPC paths.
fn authorization_policies() -> Vec<Value> {
    let mut policies = vec![json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": metadata("allow-nothing"),
        "spec": {},
    })];
    for callee in Workload::SERVICES {
        let mut rules = Vec::new();
        for caller in Workload::ALL.into_iter().filter(|w| w.in_cluster()) {
            let mut paths: Vec<&str> = declared(caller)
                .into_iter()
                .filter(|call| call.callee == callee)
                .map(|call| call.path)
                .collect();
            if paths.is_empty() {
                continue;
            }
            paths.sort();
            rules.push(json!({
                "from": [{"source": {"principals": [principal(caller)]}}],
                "to": [{"operation": {"methods": ["POST"], "paths": paths}}],
            }));
        }
        policies.push(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": metadata(callee.name()),
            "spec": {"selector": selector(callee), "action": "ALLOW", "rules": rules},
        }));
    }
    policies.extend([Workload::BffExternal, Workload::BffInternal].map(bff_policy));
    policies
}

/// The portals' BFFs, reached only through the ingress gateway: `/api/v1/*` needs a verified
/// token, except the OpenAPI document, CORS preflights and the notification stream (browsers'
/// EventSource sends no header; the BFF checks the stream's single-use ticket itself).
fn bff_policy(bff: Workload) -> Value {
    let open = [
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/api/v1/notifications/stream",
    ];
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": metadata(bff.name()),
        "spec": {
            "selector": selector(bff),
            "action": "ALLOW",
            "rules": [
                {
                    "from": [{"source": {"principals": [INGRESS_GATEWAY], "requestPrincipals": ["*"]}}],
                    "to": [{"operation": {"paths": ["/api/v1/*"]}}],
                },
                {
                    "from": [{"source": {"principals": [INGRESS_GATEWAY]}}],
                    "to": [{"operation": {"methods": ["GET"], "paths": open}}],
                },
                {
                    "from": [{"source": {"principals": [INGRESS_GATEWAY]}}],
                    "to": [{"operation": {"methods": ["OPTIONS"], "paths": ["/api/v1/*"]}}],
                },
            ],
        },
    })
}

/// Each portal's issuer on its BFF; the token is forwarded, since the BFF and every service
/// behind it check it again.
fn request_authentications() -> Vec<Value> {
    [
        (Workload::BffExternal, CLIENT_ISSUER),
        (Workload::BffInternal, EMPLOYEE_ISSUER),
    ]
    .into_iter()
    .map(|(bff, (issuer, jwks))| {
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": metadata(bff.name()),
            "spec": {
                "selector": selector(bff),
                "jwtRules": [{
                    "issuer": issuer,
                    "jwksUri": jwks,
                    "audiences": [AUDIENCE],
                    "forwardOriginalToken": true,
                }],
            },
        })
    })
    .collect()
}

fn destination_rules() -> Vec<Value> {
    Workload::SERVICES
        .into_iter()
        .chain([Workload::BffExternal, Workload::BffInternal])
        .map(|workload| {
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": metadata(workload.name()),
                "spec": {
                    "host": host(workload),
                    "trafficPolicy": {
                        "tls": {"mode": "ISTIO_MUTUAL"},
                        "connectionPool": {
                            "tcp": {"maxConnections": 200, "connectTimeout": "2s"},
                            "http": {"http2MaxRequests": 2000, "maxRequestsPerConnection": 0, "idleTimeout": "300s"},
                        },
                        "outlierDetection": {
                            "consecutiveGatewayErrors": 5,
                            "consecutive5xxErrors": 10,
                            "interval": "10s",
                            "baseEjectionTime": "30s",
                            "maxEjectionPercent": 50,
                        },
                    },
                },
            })
        })
        .collect()
}

/// The RPCs of `service`'s contract.
fn methods_of(service: Workload) -> Vec<&'static Method> {
    contracts::methods()
        .iter()
        .filter(|m| service.serves(&m.service))
        .collect()
}

/// Per service: unary reads retried on UNAVAILABLE; streams without a timeout and never
/// retried; everything else (writes: orders, charges, refunds, cancellations, status changes,
/// erasure) never retried — Istio's default would retry them, so it is turned off explicitly.
fn virtual_services() -> Vec<Value> {
    let mut services = Vec::new();
    for service in Workload::SERVICES {
        let destination = json!([{"destination": {"host": host(service), "port": {"number": port(service)}}}]);
        let exact =
            |methods: &[&Method]| -> Vec<Value> { methods.iter().map(|m| json!({"uri": {"exact": m.path}})).collect() };
        let methods = methods_of(service);
        let reads: Vec<&Method> = methods.iter().copied().filter(|m| m.read && !m.streaming).collect();
        let streams: Vec<&Method> = methods.iter().copied().filter(|m| m.streaming).collect();
        let mut routes = Vec::new();
        if !streams.is_empty() {
            routes.push(json!({
                "name": "streams",
                "match": exact(&streams),
                "timeout": "0s",
                "retries": {"attempts": 0},
                "route": destination,
            }));
        }
        routes.push(json!({
            "name": "reads",
            "match": exact(&reads),
            "timeout": "5s",
            "retries": {"attempts": 2, "perTryTimeout": "2s", "retryOn": "unavailable"},
            "route": destination,
        }));
        // A charge waits for the payment gateway.
        let write_timeout = if service == Workload::Payment { "15s" } else { "10s" };
        routes.push(json!({
            "name": "writes-never-retried",
            "timeout": write_timeout,
            "retries": {"attempts": 0},
            "route": destination,
        }));
        services.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": metadata(service.name()),
            "spec": {"hosts": [host(service)], "http": routes},
        }));
    }
    services
}

/// The two portals' hosts on the ingress gateway (behind Apigee), each to its BFF.
fn gateway() -> Vec<Value> {
    let mut documents = vec![json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": metadata("portals"),
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": [EXTERNAL_HOST, INTERNAL_HOST],
                "tls": {"mode": "SIMPLE", "credentialName": "ordermesh-portals-tls", "minProtocolVersion": "TLSV1_2"},
            }],
        },
    })];
    for (bff, portal_host) in [
        (Workload::BffExternal, EXTERNAL_HOST),
        (Workload::BffInternal, INTERNAL_HOST),
    ] {
        let destination = json!([{"destination": {"host": host(bff), "port": {"number": port(bff)}}}]);
        documents.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": metadata(&format!("{}-portal", bff.name())),
            "spec": {
                "hosts": [portal_host],
                "gateways": ["portals"],
                "http": [
                    {
                        "name": "notification-stream",
                        "match": [{"uri": {"exact": "/api/v1/notifications/stream"}}],
                        "timeout": "0s",
                        "retries": {"attempts": 0},
                        "route": destination,
                    },
                    {
                        "name": "api",
                        "timeout": "20s",
                        "retries": {"attempts": 0},
                        "route": destination,
                    },
                ],
            },
        }));
    }
    documents
}

/// What each workload's proxy may reach: the services it calls, its backing services, the
/// token issuers' key sets, and the payment gateway for payment-svc. Nothing else leaves.
fn sidecars() -> Vec<Value> {
    let data = |name: &str| format!("{DATA_NAMESPACE}/{name}.{DATA_NAMESPACE}.svc.cluster.local");
    let mut documents: Vec<Value> = Workload::ALL
        .into_iter()
        .filter(|w| w.in_cluster())
        .map(|workload| {
            let mut hosts: Vec<String> = declared(workload)
                .into_iter()
                .map(|call| format!("./{}", host(call.callee)))
                .collect();
            hosts.sort();
            hosts.dedup();
            if Workload::SERVICES.contains(&workload) {
                hosts.push(data("ordermesh-pg-rw"));
                hosts.push(data("nats"));
            }
            if matches!(
                workload,
                Workload::Product | Workload::BffExternal | Workload::BffInternal
            ) {
                hosts.push(data("redis"));
            }
            if workload != Workload::Ops {
                hosts.extend(ISSUER_HOSTS.map(|h| format!("./{h}")));
            }
            if workload == Workload::Payment {
                hosts.push(format!("./{PAYMENT_GATEWAY_HOST}"));
            }
            hosts.push("istio-system/*".to_owned());
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "Sidecar",
                "metadata": metadata(workload.name()),
                "spec": {
                    "workloadSelector": {"labels": {"app": workload.name()}},
                    "egress": [{"hosts": hosts}],
                    "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                },
            })
        })
        .collect();
    documents.push(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": metadata("token-issuers"),
        "spec": {
            "hosts": ISSUER_HOSTS,
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }));
    documents.push(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": metadata("payment-gateway"),
        "spec": {
            "hosts": [PAYMENT_GATEWAY_HOST],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }));
    documents
}
