use std::time::Duration;

use clap::Subcommand;
use ordermesh_platform::auth::{DevTokenRequest, IssuerKind, Role};

use crate::DataDirArg;
use crate::up::{DEV_AUDIENCE, load_dev_issuer};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A client-portal token for identity subject S.
    Client {
        #[arg(long)]
        subject: String,
        #[command(flatten)]
        common: TokenArgs,
    },
    /// An employee token with the given app roles.
    Employee {
        /// admin, order-manager or customer-service; repeat for several.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        #[arg(long, default_value = "dev-employee")]
        subject: String,
        #[command(flatten)]
        common: TokenArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Lifetime in minutes.
    #[arg(long, default_value_t = 60)]
    ttl_minutes: u64,
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value).ok_or_else(|| format!("unknown role {value:?} (admin, order-manager, customer-service)"))
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    let (kind, subject, roles, common) = match command {
        TokenCommand::Client { subject, common } => (IssuerKind::Client, subject, Vec::new(), common),
        TokenCommand::Employee { roles, subject, common } => (IssuerKind::Employee, subject, roles, common),
    };
    let issuer = load_dev_issuer(&common.data.data_dir)?;
    let token = issuer.mint(&DevTokenRequest {
        kind,
        subject,
        roles,
        audience: DEV_AUDIENCE.to_owned(),
        ttl: Duration::from_secs(common.ttl_minutes * 60),
    })?;
    println!("{token}");
    Ok(())
}
