//! `ordermesh dlq list|replay`: the dead-letter queue of the NATS JetStream event bus.

use clap::Subcommand;
use ordermesh_platform::events::{EventBus, EventsConfig, NatsBus, dlq};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered events (oldest first).
    List {
        #[command(flatten)]
        bus: BusArgs,
    },
    /// Deliver dead-lettered events again (after fixing the fault) and remove them from the queue.
    Replay {
        /// Dead-letter id, as printed by `ordermesh dlq list`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        bus: BusArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct BusArgs {
    /// NATS server with JetStream (required: the embedded profile's in-process bus lives inside
    /// the running `ordermesh up`).
    #[arg(long, env = "NATS_URL")]
    nats_url: Option<String>,
    /// First token of event subjects.
    #[arg(long, env = "ORDERMESH_SUBJECT_PREFIX", default_value = "ordermesh")]
    subject_prefix: String,
    /// Prefix of stream names.
    #[arg(long, env = "ORDERMESH_STREAM_PREFIX", default_value = "")]
    stream_prefix: String,
}

impl BusArgs {
    async fn connect(&self) -> anyhow::Result<NatsBus> {
        let Some(url) = self.nats_url.as_deref().filter(|url| !url.trim().is_empty()) else {
            anyhow::bail!(
                "NATS_URL is not set: `ordermesh dlq` works on the NATS JetStream dead-letter stream; set NATS_URL (or --nats-url), e.g. nats://127.0.0.1:4222"
            )
        };
        let config = EventsConfig {
            subject_prefix: self.subject_prefix.clone(),
            stream_prefix: self.stream_prefix.clone(),
            security: ordermesh_platform::backing::NatsSecurity::from_env(&ordermesh_platform::Env::from_process())?,
            ..EventsConfig::default()
        };
        Ok(NatsBus::connect_only(url, config).await?)
    }
}

pub fn run(command: DlqCommand) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async move {
        match command {
            DlqCommand::List { bus } => {
                let bus = bus.connect().await?;
                let letters = bus.dead_letters().await?;
                if letters.is_empty() {
                    println!("no dead letters");
                    return Ok(());
                }
                println!(
                    "{:<8} {:<20} {:<20} {:<28} {:<36} {:>5} {:<27} ERROR",
                    "ID", "SERVICE", "TOPIC", "EVENT TYPE", "EVENT ID", "TRIES", "DEAD-LETTERED AT"
                );
                for letter in letters {
                    println!(
                        "{:<8} {:<20} {:<20} {:<28} {:<36} {:>5} {:<27} {}",
                        letter.id,
                        letter.service,
                        letter.topic,
                        letter.event.short_type(),
                        letter.event.id,
                        letter.delivery_count,
                        letter
                            .dead_lettered_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        letter.error
                    );
                }
                Ok(())
            }
            DlqCommand::Replay { id, all, bus } => {
                let bus = bus.connect().await?;
                if all {
                    let count = dlq::replay_all(&bus).await?;
                    println!("replayed {count} dead letter(s)");
                } else if let Some(id) = id {
                    bus.replay_dead_letter(id).await?;
                    println!("replayed dead letter {id}");
                }
                Ok(())
            }
        }
    })
}
