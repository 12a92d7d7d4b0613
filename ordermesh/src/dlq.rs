//! `ordermesh dlq list|replay|discard`: the dead letters of the running services, through each
//! service's `ordermesh.ops.v1.OpsService` — so it works the same against `ordermesh up` (whose
//! in-process bus lives inside that process) and against a cluster on NATS JetStream, and every
//! replay and discard is audited by the service that does it.

use std::time::Duration;

use clap::Subcommand;
use ordermesh_platform::auth::{DevTokenRequest, IssuerKind};
use ordermesh_platform::client::{ClientConfig, endpoint};
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::mesh::tls::WorkloadTls;
use ordermesh_platform::ops::OPS_WORKLOAD;
use ordermesh_platform::{Env, PeerUrls};
use ordermesh_proto::ops::ops_service_client::OpsServiceClient;
use ordermesh_proto::ops::{
    DeadLetter, DiscardDeadLetterRequest, ListDeadLettersRequest, ReplayAllDeadLettersRequest, ReplayDeadLetterRequest,
};
use tonic::transport::Channel;

use crate::DataDirArg;
use crate::up::{DEV_AUDIENCE, load_dev_issuer};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered events, oldest first.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Deliver dead-lettered events again (after fixing the cause) and remove them.
    Replay {
        /// Dead-letter id, as printed by `ordermesh dlq list`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Replay every dead letter (of `--service` only, if given).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a dead letter without delivering it; the reason is recorded in the audit log.
    Discard {
        id: u64,
        /// Why (1–500 characters, no personal data).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Which services, and as whom.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Only this service (`order`, `product`, …); every service when absent.
    #[arg(long, value_parser = parse_service)]
    service: Option<Workload>,
    /// A bearer token of an admin employee or of the `ops` workload; when absent, an `ops`
    /// token is minted with the dev issuer of `ordermesh up`'s data directory.
    #[arg(long, env = "ORDERMESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// `ordermesh up`'s port offset, for services whose `<NAME>_SVC_URL` is not set.
    #[arg(long, env = "ORDERMESH_PORT_OFFSET", default_value_t = 0)]
    port_offset: u16,
    #[command(flatten)]
    data: DataDirArg,
}

fn parse_service(value: &str) -> Result<Workload, String> {
    Workload::of_service(value.trim_end_matches("-svc"))
        .ok_or_else(|| format!("unknown service {value:?} (product, customer, order, payment, audit, notification)"))
}

/// One service's ops API, with the caller's token on every call.
struct Ops {
    service: Workload,
    client: OpsServiceClient<Channel>,
    token: String,
}

impl Ops {
    fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse()?);
        Ok(request)
    }

    async fn dead_letters(&mut self) -> anyhow::Result<Vec<DeadLetter>> {
        let request = self.request(ListDeadLettersRequest {
            page_size: ordermesh_platform::ops::MAX_PAGE_SIZE as i32,
            topic: String::new(),
        })?;
        let answer = self
            .client
            .list_dead_letters(request)
            .await
            .map_err(|s| self.failed(s))?;
        Ok(answer.into_inner().dead_letters)
    }

    fn failed(&self, status: tonic::Status) -> anyhow::Error {
        anyhow::anyhow!("{}: {:?}: {}", self.service, status.code(), status.message())
    }
}

impl Target {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = self.token.as_deref().filter(|t| !t.trim().is_empty()) {
            return Ok(token.trim().to_owned());
        }
        let issuer = load_dev_issuer(&self.data.data_dir)?;
        issuer.mint(&DevTokenRequest {
            kind: IssuerKind::Service,
            subject: OPS_WORKLOAD.to_owned(),
            roles: Vec::new(),
            audience: DEV_AUDIENCE.to_owned(),
            ttl: Duration::from_secs(600),
        })
    }

    /// The ops API of each targeted service, at `<NAME>_SVC_URL` (default: `ordermesh up`'s
    /// ports), over mutual TLS when `GRPC_TLS_*` name the `ops` workload's certificate.
    fn services(&self) -> anyhow::Result<Vec<Ops>> {
        let env = Env::from_process();
        let peers = PeerUrls::from_env(&env)?;
        let url = |service: Workload| match env.optional(&format!("{}_SVC_URL", service.service().to_uppercase())) {
            Some(_) => peers.url(service).to_owned(),
            None => format!("http://127.0.0.1:{}", crate::mesh::port(service) + self.port_offset),
        };
        let tls = WorkloadTls::from_env(&env, Workload::Ops)?;
        let token = self.token()?;
        let targeted: Vec<Workload> = match self.service {
            Some(service) => vec![service],
            None => Workload::SERVICES.to_vec(),
        };
        targeted
            .into_iter()
            .map(|service| {
                let config = ClientConfig {
                    tls: tls.clone(),
                    ..ClientConfig::new(service.name(), url(service))
                };
                Ok(Ops {
                    service,
                    client: OpsServiceClient::new(endpoint(&config)?.connect_lazy()),
                    token: token.clone(),
                })
            })
            .collect()
    }
}

fn print(letters: &[DeadLetter]) {
    if letters.is_empty() {
        println!("no dead letters");
        return;
    }
    println!(
        "{:<8} {:<18} {:<20} {:<24} {:<36} {:>5} {:<24} ERROR",
        "ID", "SERVICE", "TOPIC", "EVENT TYPE", "EVENT ID", "TRIES", "DEAD-LETTERED AT"
    );
    for letter in letters {
        let at = letter
            .dead_lettered_time
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        println!(
            "{:<8} {:<18} {:<20} {:<24} {:<36} {:>5} {:<24} {}",
            letter.id,
            letter.service,
            letter.topic,
            ordermesh_platform::events::envelope::short_type(&letter.event_type),
            letter.event_id,
            letter.delivery_count,
            at,
            letter.error
        );
    }
}

/// The service holding dead letter `id`.
async fn owner(services: &mut [Ops], id: u64) -> anyhow::Result<&mut Ops> {
    let mut found = None;
    for (index, ops) in services.iter_mut().enumerate() {
        if ops.dead_letters().await?.iter().any(|l| l.id == id) {
            found = Some(index);
            break;
        }
    }
    let index = found.ok_or_else(|| anyhow::anyhow!("no dead letter {id} (already replayed or discarded?)"))?;
    Ok(&mut services[index])
}

pub fn run(command: DlqCommand) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async move {
        match command {
            DlqCommand::List { target } => {
                let mut letters = Vec::new();
                for mut ops in target.services()? {
                    letters.extend(ops.dead_letters().await?);
                }
                letters.sort_by_key(|l| l.dead_lettered_time.as_ref().map(|t| (t.seconds, t.nanos)));
                print(&letters);
            }
            DlqCommand::Replay {
                id: Some(id), target, ..
            } => {
                let mut services = target.services()?;
                let ops = owner(&mut services, id).await?;
                let request = ops.request(ReplayDeadLetterRequest { id })?;
                ops.client
                    .replay_dead_letter(request)
                    .await
                    .map_err(|s| ops.failed(s))?;
                println!("replayed dead letter {id} ({})", ops.service);
            }
            DlqCommand::Replay { id: None, target, .. } => {
                let mut total = 0;
                for mut ops in target.services()? {
                    let request = ops.request(ReplayAllDeadLettersRequest { topic: String::new() })?;
                    let answer = ops
                        .client
                        .replay_all_dead_letters(request)
                        .await
                        .map_err(|s| ops.failed(s))?;
                    total += answer.into_inner().dead_letters.len();
                }
                println!("replayed {total} dead letter(s)");
            }
            DlqCommand::Discard { id, reason, target } => {
                let mut services = target.services()?;
                let ops = owner(&mut services, id).await?;
                let request = ops.request(DiscardDeadLetterRequest { id, reason })?;
                ops.client
                    .discard_dead_letter(request)
                    .await
                    .map_err(|s| ops.failed(s))?;
                println!("discarded dead letter {id} ({})", ops.service);
            }
        }
        Ok(())
    })
}
