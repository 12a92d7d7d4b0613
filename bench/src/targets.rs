//! What the scenarios load, started in this process on loopback ports: the platform's pieces
//! (product-svc on the embedded profile, the BFF, the platform's gRPC server stack) and the bare
//! baselines they are compared with (a bare axum route, bare tonic).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use ordermesh_platform::auth::{DevIssuer, DevTokenRequest, IssuerKind, Role};
use ordermesh_platform::{Env, ServiceConfig, Shutdown};
use ordermesh_proto::common::Money;
use ordermesh_proto::product::product_service_client::ProductServiceClient;
use ordermesh_proto::product::{
    CreateCategoryRequest, CreateProductRequest, GetProductRequest, GetProductResponse, Product,
};
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub const AUDIENCE: &str = "ordermesh";

async fn wait_serving(addr: SocketAddr) -> anyhow::Result<()> {
    ordermesh_platform::host::wait_ready("target", addr, Duration::from_secs(30), || None).await
}

/// The standard health service, reporting SERVING.
async fn health_serving() -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>
{
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    service
}

async fn listener() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// A development issuer whose JWKS is served here, and its tokens.
pub struct Issuer {
    pub issuer: Arc<DevIssuer>,
}

impl Issuer {
    pub async fn start(shutdown: &Shutdown) -> anyhow::Result<Self> {
        let (listener, addr) = listener().await?;
        let issuer = Arc::new(DevIssuer::generate(format!("http://{addr}"))?);
        let router = issuer.router();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.wait().await })
                .await
        });
        Ok(Self { issuer })
    }

    pub fn token(&self, kind: IssuerKind, subject: &str, roles: Vec<Role>) -> anyhow::Result<String> {
        mint(&self.issuer, kind, subject, roles)
    }
}

/// A token of `issuer` for [`AUDIENCE`], valid for an hour (longer than any run).
pub fn mint(issuer: &DevIssuer, kind: IssuerKind, subject: &str, roles: Vec<Role>) -> anyhow::Result<String> {
    issuer.mint(&DevTokenRequest {
        kind,
        subject: subject.to_owned(),
        roles,
        audience: AUDIENCE.to_owned(),
        ttl: Duration::from_secs(3600),
    })
}

/// The platform's gRPC server stack serving only health (and reflection).
pub async fn platform_health(shutdown: &Shutdown) -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listener().await?;
    let config = ServiceConfig::from_env(&Env::default(), "bench", 0)?;
    tokio::spawn(ordermesh_platform::grpc::GrpcServer::new(&config).serve(listener, shutdown.clone()));
    wait_serving(addr).await?;
    Ok(addr)
}

/// Bare tonic serving the standard health service.
pub async fn bare_health(shutdown: &Shutdown) -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listener().await?;
    let health = health_serving().await;
    let stop = shutdown.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(tokio_stream_of(listener), async move { stop.wait().await }),
    );
    wait_serving(addr).await?;
    Ok(addr)
}

/// The baselines' connections as tonic's own `Server::serve` accepts them: TCP_NODELAY on, its
/// default (and the platform's). A bare listener stream left Nagle on, a setting that favours
/// h2load's pipelined streams and that no server here runs with.
fn tokio_stream_of(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// product-svc on the embedded profile (a SQLite file in `dir`, in-memory cache), with one
/// product; returns its address and the product.
pub async fn product_svc(
    issuer: &Issuer,
    dir: &std::path::Path,
    token_cache: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<(SocketAddr, Product)> {
    let (listener, addr) = listener().await?;
    let url = format!("sqlite://{}/product.db", dir.display());
    let env = Env::from_pairs([("DATABASE_URL", url.as_str())]);
    let mut config = ServiceConfig::from_env(&env, product_svc::SERVICE, 0)?;
    config.auth = issuer.issuer.auth_config(AUDIENCE);
    if !token_cache {
        config.auth.token_cache_size = 0;
    }
    config.bus = Some(Arc::new(ordermesh_platform::events::MemoryBus::new()));
    tokio::spawn(product_svc::run(config, listener.into(), shutdown.clone()));
    wait_serving(addr).await?;

    let admin = issuer.token(IssuerKind::Employee, "bench-admin", vec![Role::Admin])?;
    let product = create_product(addr, &admin, "BENCH-1").await?;
    Ok((addr, product))
}

/// A category and an active product `sku` in it, created on product-svc at `addr` by `admin`.
pub async fn create_product(addr: SocketAddr, admin: &str, sku: &str) -> anyhow::Result<Product> {
    let mut client = ProductServiceClient::connect(format!("http://{addr}")).await?;
    let category = client
        .create_category(authorized(
            CreateCategoryRequest {
                name: format!("Bench {sku}"),
                ..Default::default()
            },
            admin,
        ))
        .await?
        .into_inner()
        .category
        .ok_or_else(|| anyhow::anyhow!("no category"))?;
    let product = Product {
        sku: sku.to_owned(),
        name: "Espresso machine".into(),
        description: "A product of the benchmark".into(),
        category_id: category.id,
        price: Some(Money {
            amount_minor: 24900,
            currency_code: "EUR".into(),
        }),
        active: true,
        ..Default::default()
    };
    client
        .create_product(authorized(CreateProductRequest { product: Some(product) }, admin))
        .await?
        .into_inner()
        .product
        .ok_or_else(|| anyhow::anyhow!("no product"))
}

pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The encoded `GetProductResponse` product-svc answers for `product`.
pub async fn get_product_answer(addr: SocketAddr, product_id: &str, token: &str) -> anyhow::Result<GetProductResponse> {
    let mut client = ProductServiceClient::connect(format!("http://{addr}")).await?;
    let request = GetProductRequest {
        product_id: product_id.to_owned(),
    };
    Ok(client.get_product(authorized(request, token)).await?.into_inner())
}

/// Bare tonic answering `GetProduct` with `answer` (no storage, no layers): the message size
/// of product-svc's answer, the cost of nothing else.
pub async fn bare_get_product(answer: GetProductResponse, shutdown: &Shutdown) -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listener().await?;
    let stop = shutdown.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BareProducts(Arc::new(answer)))
            .add_service(health_serving().await)
            .serve_with_incoming_shutdown(tokio_stream_of(listener), async move { stop.wait().await }),
    );
    wait_serving(addr).await?;
    Ok(addr)
}

#[derive(Clone)]
struct BareProducts(Arc<GetProductResponse>);

impl NamedService for BareProducts {
    const NAME: &'static str = "ordermesh.product.v1.ProductService";
}

struct Answer(Arc<GetProductResponse>);

impl tonic::server::UnaryService<GetProductRequest> for Answer {
    type Response = GetProductResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<GetProductResponse>, tonic::Status>>;

    fn call(&mut self, _request: tonic::Request<GetProductRequest>) -> Self::Future {
        let answer = (*self.0).clone();
        Box::pin(async move { Ok(tonic::Response::new(answer)) })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for BareProducts {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let answer = self.0.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Answer(answer), request).await)
        })
    }
}

/// The BFF in front of product-svc (the other services absent: the scenario reads products
/// only), with rate limits out of the way, its product tier on or off.
pub async fn bff(issuer: &Issuer, product: SocketAddr, tier: bool, shutdown: &Shutdown) -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listener().await?;
    let mut peers = ordermesh_platform::PeerUrls::from_env(&Env::default())?;
    peers.product = format!("http://{product}");
    let mut config = bff::BffConfig::new(issuer.issuer.auth_config(AUDIENCE), peers);
    config.rate_limits.external = u64::MAX / 4;
    config.rate_limits.internal = u64::MAX / 4;
    if !tier {
        config.product_cache = Duration::ZERO;
    }
    tokio::spawn(bff::run(config, listener, shutdown.clone()));
    wait_healthz(addr).await?;
    Ok(addr)
}

/// Waits until `GET /healthz` answers (a raw HTTP/1.1 request: no client library needed).
async fn wait_healthz(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..500 {
        if let Ok(body) = get(addr, "/healthz", None).await
            && !body.is_empty()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the BFF at {addr} did not answer /healthz")
}

/// The body of `GET path` (HTTP/1.1, `Connection: close`), with an optional bearer token.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        head.lines().next().unwrap_or("")
    );
    anyhow::ensure!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "GET {path}: chunked answers are not read here"
    );
    Ok(response[split + 4..].to_vec())
}

/// A bare axum route answering `GET /api/v1/products/{id}` with `body`, as JSON.
pub async fn bare_axum(body: Vec<u8>, shutdown: &Shutdown) -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listener().await?;
    let body = axum::body::Bytes::from(body);
    let router = axum::Router::new().route(
        "/api/v1/products/{id}",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await
    });
    Ok(addr)
}
