//! `rampart intel import|lookup|feeds`: shared threat-intel feeds in a data
//! directory (the server's, while it is stopped; a running server takes
//! feeds over `POST /v1/intel/feeds/{name}`).

use std::collections::BTreeSet;
use std::io::Write as _;
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
    #[arg(long, required_unless_present = "file")]
    kind: Option<String>,
    /// The value.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    value: Option<String>,
    /// Look up every line of FILE (`-`: stdin), each `{"kind": …, "value":
    /// …}`, printing one JSON line per lookup; the tenant's feeds are
    /// indexed once for all of them.
    #[arg(long, value_name = "FILE", conflicts_with = "kind")]
    file: Option<PathBuf>,
}

fn open(data: &std::path::Path) -> Result<SledStore, Failure> {
    SledStore::open(data).map_err(|err| Failure::load(err.to_string()))
}

pub fn run(command: IntelCommand) -> Result<(), Failure> {
    match command {
        IntelCommand::Import(args) => import(args),
        IntelCommand::Lookup(args) => lookup(args),
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

fn entity_kind(text: &str) -> Result<EntityKind, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        format!("`{text}` is not an entity kind (ip, domain, url, file_hash, email, hostname)")
    })
}

/// One lookup, or every line of `--file`: only the tenant's own feeds are
/// indexed (once), not every feed of the store.
fn lookup(args: LookupArgs) -> Result<(), Failure> {
    let store = open(&args.data)?;
    let tenant = TenantId::new(args.tenant).map_err(|e| Failure::usage(e.to_string()))?;
    let started = std::time::Instant::now();
    let index = store
        .feeds()
        .index_of(&tenant)
        .map_err(|e| Failure::load(e.to_string()))?;
    let indexed = started.elapsed();
    let one = |entity: &Entity| {
        store
            .intel_lookup_in(
                &index,
                &tenant,
                entity,
                rampart::intel::ReferencePage::default(),
            )
            .map_err(|e| Failure::load(e.to_string()))
    };
    let Some(file) = args.file else {
        let kind = entity_kind(args.kind.as_deref().unwrap_or_default())
            .map_err(|e| Failure::usage(format!("--kind {e}")))?;
        let entity = Entity {
            kind,
            value: args.value.unwrap_or_default(),
        };
        let found = one(&entity)?;
        print_json(&serde_json::json!({"entity": entity, "matches": found}));
        return Ok(());
    };
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&file)
    }
    .map_err(|err| Failure::usage(format!("{}: {err}", file.display())))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        kind: String,
        value: String,
    }
    let (mut done, mut hits, mut bad) = (0usize, 0usize, 0usize);
    let looked = std::time::Instant::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Line>(line)
            .map_err(|err| err.to_string())
            .and_then(|l| {
                Ok(Entity {
                    kind: entity_kind(&l.kind)?,
                    value: l.value,
                })
            });
        let record = match parsed {
            Ok(entity) => {
                let found = one(&entity)?;
                done += 1;
                hits += usize::from(!found.is_empty());
                serde_json::json!({"line": n + 1, "entity": entity, "matches": found})
            }
            Err(error) => {
                bad += 1;
                serde_json::json!({"line": n + 1, "error": error})
            }
        };
        writeln!(out, "{record}").map_err(|err| Failure::usage(format!("stdout: {err}")))?;
    }
    out.flush()
        .map_err(|err| Failure::usage(format!("stdout: {err}")))?;
    let elapsed = looked.elapsed().as_secs_f64();
    eprintln!(
        "{done} lookups ({hits} with matches, {bad} bad lines) in {:.0} ms = {:.0}/s; the tenant's feeds indexed in {} ms",
        elapsed * 1e3,
        done as f64 / elapsed.max(1e-9),
        indexed.as_millis()
    );
    if bad > 0 {
        return Err(Failure::usage(format!(
            "{bad} lines of {} are not lookups",
            file.display()
        )));
    }
    Ok(())
}
