//! `rampart audit verify` and `rampart audit export`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use rampart::audit::{AuditKey, AuditLog};
use rampart::store::SledStore;
use rampart::tenant::TenantId;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every tenant's chain (or one) and check the signed checkpoints.
    Verify {
        /// Data directory.
        #[arg(long, default_value = "rampart-data")]
        data: PathBuf,
        /// The checkpoint key (outside the data directory).
        #[arg(long, env = "RAMPART_AUDIT_KEY", default_value = "rampart-audit.key")]
        audit_key: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write a tenant's records as JSON lines.
    Export {
        /// Data directory.
        #[arg(long, default_value = "rampart-data")]
        data: PathBuf,
        /// The checkpoint key.
        #[arg(long, env = "RAMPART_AUDIT_KEY", default_value = "rampart-audit.key")]
        audit_key: PathBuf,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn open(data: &Path, key: &Path) -> Result<AuditLog, Failure> {
    if !data.exists() {
        return Err(Failure::usage(format!(
            "no data directory {}",
            data.display()
        )));
    }
    if !key.exists() {
        return Err(Failure::usage(format!(
            "no audit key {}: without it checkpoints cannot be verified",
            key.display()
        )));
    }
    let key =
        AuditKey::load_or_create(key, Some(data)).map_err(|err| Failure::usage(err.to_string()))?;
    let store = SledStore::open(data).map_err(|err| Failure::load(err.to_string()))?;
    Ok(AuditLog::new(store.space().clone(), key))
}

pub fn run(command: AuditCommand) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify {
            data,
            audit_key,
            tenant,
        } => {
            let log = open(&data, &audit_key)?;
            let tenants = match tenant {
                Some(tenant) => vec![tenant],
                None => log
                    .tenants()
                    .map_err(|err| Failure::load(err.to_string()))?,
            };
            let mut broken = 0;
            for name in tenants {
                let tenant = TenantId::new(name).map_err(|err| Failure::usage(err.to_string()))?;
                let report = log
                    .verify(&tenant)
                    .map_err(|err| Failure::call(err.to_string()))?;
                match &report.breach {
                    None => println!(
                        "{tenant}: ok — {} records, {} signed checkpoints, head {}; {}",
                        report.records,
                        report.checkpoints,
                        report.head.get(..16).unwrap_or_default(),
                        match report.outside_head {
                            Some(seq) => format!(
                                "signed head kept outside the data directory at record {seq}"
                            ),
                            None => "no signed head outside the data directory".to_owned(),
                        }
                    ),
                    Some(breach) => {
                        broken += 1;
                        println!(
                            "{tenant}: BROKEN at record {} — {}",
                            breach.seq, breach.reason
                        );
                    }
                }
            }
            if broken > 0 {
                return Err(Failure {
                    message: format!("{broken} tenant chain(s) failed verification"),
                    code: 5,
                });
            }
            Ok(())
        }
        AuditCommand::Export {
            data,
            audit_key,
            tenant,
            out,
        } => {
            let log = open(&data, &audit_key)?;
            let tenant = TenantId::new(tenant).map_err(|err| Failure::usage(err.to_string()))?;
            let written = match out {
                Some(path) => {
                    let mut file = std::fs::File::create(&path)
                        .map_err(|err| Failure::usage(format!("{}: {err}", path.display())))?;
                    log.export(&tenant, &mut file)
                }
                None => log.export(&tenant, &mut std::io::stdout().lock()),
            }
            .map_err(|err| Failure::call(err.to_string()))?;
            eprintln!("exported {written} records");
            Ok(())
        }
    }
}
