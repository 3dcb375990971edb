//! `rampart intel import|lookup|feeds`: shared threat-intel feeds in a data
//! directory (the server's, while it is stopped; a running server takes
//! feeds over `POST /v1/intel/feeds/{name}`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use rampart::intel::formats::{self, Format};
use rampart::model::{Entity, EntityKind};
use rampart::store::{SledStore, Store};
use rampart::tenant::TenantId;

use super::{Failure, print_json};

#[derive(Debug, Subcommand)]
pub enum IntelCommand {
    /// Import a feed (replacing an earlier import of the same name).
    Import(ImportArgs),
    /// Look an entity up as a tenant would.
    Lookup(LookupArgs),
    /// List the feeds and their sizes.
    Feeds {
        /// Data directory.
        #[arg(long, default_value = "rampart-data")]
        data: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Data directory (not in use by a running server).
    #[arg(long, default_value = "rampart-data")]
    data: PathBuf,
    /// Feed name, e.g. `maltrail`.
    #[arg(long)]
    feed: String,
    /// ipsum | maltrail | hashes | eset | loki | misp | stix.
    #[arg(long)]
    format: Format,
    /// Tenants to subscribe to the feed (comma-separated; added to theirs).
    #[arg(long, value_delimiter = ',')]
    subscribe: Vec<String>,
    /// Files (maltrail: `.tar.gz` parts, a directory or trail files).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// Data directory.
    #[arg(long, default_value = "rampart-data")]
    data: PathBuf,
    /// Tenant.
    #[arg(long)]
    tenant: String,
    /// ip | domain | url | file_hash | email | hostname.
    #[arg(long)]
    kind: String,
    /// The value.
    value: String,
}

fn open(data: &std::path::Path) -> Result<SledStore, Failure> {
    SledStore::open(data).map_err(|err| Failure::load(err.to_string()))
}

pub fn run(command: IntelCommand) -> Result<(), Failure> {
    match command {
        IntelCommand::Import(args) => import(args),
        IntelCommand::Lookup(args) => {
            let store = open(&args.data)?;
            let tenant = TenantId::new(args.tenant).map_err(|e| Failure::usage(e.to_string()))?;
            let kind: EntityKind = serde_json::from_value(serde_json::Value::String(
                args.kind.clone(),
            ))
            .map_err(|_| Failure::usage(format!("--kind `{}` is not an entity kind", args.kind)))?;
            let entity = Entity {
                kind,
                value: args.value,
            };
            let found = store
                .intel_lookup(&tenant, &entity)
                .map_err(|e| Failure::load(e.to_string()))?;
            print_json(&serde_json::json!({"entity": entity, "matches": found}));
            Ok(())
        }
        IntelCommand::Feeds { data } => {
            let store = open(&data)?;
            let feeds: Vec<serde_json::Value> = store
                .feeds()
                .index()
                .feeds()
                .into_iter()
                .map(|(name, size)| serde_json::json!({"feed": name, "indicators": size}))
                .collect();
            print_json(&serde_json::json!({"feeds": feeds}));
            Ok(())
        }
    }
}

fn import(args: ImportArgs) -> Result<(), Failure> {
    let tenants = args
        .subscribe
        .iter()
        .map(|t| TenantId::new(t.as_str()).map_err(|e| Failure::usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let total: u64 = args
        .files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = indicatif::ProgressBar::new(total.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} read {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("reading {}", args.feed));
    let started = std::time::Instant::now();
    let mut parsed = formats::Parsed::default();
    let mut done = 0u64;
    for file in &args.files {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        // Compressed parts report uncompressed bytes: show whole files.
        let one = formats::read(args.format, file, &mut |_| {})
            .map_err(|e| Failure::usage(e.to_string()))?;
        done += size;
        bar.set_position(done);
        parsed.extend(one);
    }
    bar.set_message(format!("indexing {}", args.feed));
    let store = open(&args.data)?;
    let summary = store
        .feeds()
        .import(&args.feed, args.format, parsed, false)
        .map_err(|e| Failure::usage(e.to_string()))?;
    for tenant in &tenants {
        let mut feeds: BTreeSet<String> = store.feeds().index().subscriptions(tenant);
        feeds.insert(args.feed.clone());
        store
            .feeds()
            .subscribe(tenant, feeds)
            .map_err(|e| Failure::usage(e.to_string()))?;
    }
    bar.finish_and_clear();
    eprintln!(
        "feed {}: {} indicators imported in {:.2?} ({}), {} skipped{}",
        summary.feed,
        summary.imported,
        started.elapsed(),
        summary
            .by_type
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        summary.skipped.values().sum::<usize>(),
        if tenants.is_empty() {
            String::new()
        } else {
            format!(
                "; subscribed: {}",
                tenants
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    for (reason, count) in &summary.skipped {
        eprintln!("  skipped {count}: {reason}");
    }
    print_json(&serde_json::to_value(&summary).unwrap_or_default());
    Ok(())
}
