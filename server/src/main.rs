//! The `fieldtally` command: serve, migrate, and administer users and forms.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fieldtally::config::{DataKeyArgs, DatabaseArgs, ServeArgs};
use fieldtally::db;
use fieldtally::indicators::{self, Indicators};
use fieldtally::users::{self, NewUser, Role};

#[derive(Parser)]
#[command(
    name = "fieldtally",
    version,
    about = "Field data collection server for ODK Collect"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates and migrates the database, loads the shipped forms on first start).
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database schema and exit.
    Migrate(DatabaseArgs),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage forms.
    Form {
        #[command(subcommand)]
        command: FormCommand,
    },
    /// Check that stored files and the database agree; --repair removes unreferenced files.
    Fsck {
        /// Remove blobs no row refers to and stale upload temporaries.
        #[arg(long)]
        repair: bool,
        /// Leave files younger than this many seconds alone (uploads in progress elsewhere).
        #[arg(long, default_value_t = 86400)]
        grace_secs: u64,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Copy the database (SQLite, online) and every stored file into DIR; run again to update.
    Backup {
        dir: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Restore a backup from DIR into an empty data folder.
    Restore {
        dir: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Manage the data keys that seal protected personal data.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the area registry (provinces, districts, communes, hamlets).
    Areas {
        #[command(subcommand)]
        command: AreasCommand,
    },
    /// Project 8 indicator figures, targets and baselines.
    Indicators {
        #[command(subcommand)]
        command: IndicatorsCommand,
    },
    /// Manage the keys that sign API access tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// A beneficiary's records: find them, export them for her, or erase them at her request.
    Subject {
        #[command(subcommand)]
        command: SubjectCommand,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Make a new key sign access tokens from now on; tokens signed with the previous keys stay
    /// valid until they expire, so nobody is logged out.
    RotateSigningKey {
        /// The longest access token lifetime of the servers (their --token-ttl): retired keys
        /// older than this are deleted.
        #[arg(long, env = "FIELDTALLY_TOKEN_TTL", default_value_t = 3600)]
        token_ttl: i64,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum SubjectCommand {
    /// List every submission that carries the beneficiary's key.
    Find {
        #[command(flatten)]
        who: Beneficiary,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Print everything stored about the beneficiary as JSON, sensitive values opened; every
    /// version opened is written to the access log with the purpose.
    Export {
        #[command(flatten)]
        who: Beneficiary,
        /// The administrator doing this, for the access log.
        #[arg(long)]
        by: String,
        /// Why (one line, e.g. the request's reference), for the access log.
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        keys: DataKeyArgs,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Erase every submission that carries the key, with its files; the indicator figures
    /// change in the same transaction. Without --yes only shows what would go.
    Erase {
        #[command(flatten)]
        who: Beneficiary,
        /// The administrator doing this, for the audit log.
        #[arg(long)]
        by: String,
        /// Why (one line, e.g. the request's reference), for the audit log.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// Who: a beneficiary key as the API shows it, or the identity it is derived from.
#[derive(Args)]
struct Beneficiary {
    /// The pseudonymous key (`beneficiary_key` in the API).
    #[arg(long, conflicts_with_all = ["hamlet", "parts"])]
    key: Option<String>,
    /// The hamlet code the beneficiary was recorded in (with --part).
    #[arg(long)]
    hamlet: Option<String>,
    /// An identity answer ROLE=VALUE as the form marks it: name=…, birth_year=…,
    /// household_code=…; repeat for each.
    #[arg(long = "part", value_name = "ROLE=VALUE")]
    parts: Vec<String>,
}

#[derive(Subcommand)]
enum IndicatorsCommand {
    /// Recompute every figure from the raw submissions (the maintained figures are replaced).
    Recompute {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Recompute every figure into a scratch copy and compare it with the maintained figures;
    /// exits with status 1 if they differ.
    Verify {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Import targets from a CSV file (columns indicator, measure, area, year, target, on).
    ImportTargets {
        file: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Import baselines from a CSV file (columns baseline, area, year, value, on).
    ImportBaselines {
        file: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new key line to append to the data key file (the last key seals).
    Generate {
        /// The key's id, stored with everything it seals.
        #[arg(long)]
        id: String,
    },
    /// Re-seal everything with the current (last) key, and seal plain submissions of forms
    /// marked sensitive; afterwards older keys can be removed from the file.
    Rotate {
        #[command(flatten)]
        keys: DataKeyArgs,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum AreasCommand {
    /// Import areas from a CSV file (one area version per row: hamlets with their commune,
    /// centroid and attributes) or a GeoJSON file (boundaries and centroids). All or nothing.
    Import {
        file: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; without --password-stdin a random password is generated and printed.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["admin", "province_officer", "supervisor", "collector", "api_client"])]
        role: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum FormCommand {
    /// Add a form version from an XForm XML file or an XLSForm workbook (.xlsx, .xls, .ods).
    Add {
        file: PathBuf,
        /// Open the version for phones at once.
        #[arg(long)]
        publish: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

fn open(db: &DatabaseArgs) -> anyhow::Result<db::DbConn> {
    let (_, conn) = db::connect(&db.url())?;
    Ok(conn)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIELDTALLY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // JSON lines for log collectors; each line carries the request id of its request's span.
    if std::env::var("FIELDTALLY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn rotate(keys: &DataKeyArgs, db: &DatabaseArgs) -> anyhow::Result<()> {
    use fieldtally::protection;
    let (path, _) = keys.path(&db.data_dir);
    let keys = fieldtally::crypto::DataKeys::load(&path)?;
    let mut conn = open(db)?;
    let sensitive = protection::sensitive_forms(&mut conn.conn())?;
    let mut total = protection::Resealed::default();
    loop {
        let after = total.last_id;
        let batch = conn
            .conn()
            .write_transaction(|c| protection::reseal_batch(c, &keys, &sensitive, after, 200))?;
        if batch.scanned == 0 {
            break;
        }
        total.scanned += batch.scanned;
        total.rotated += batch.rotated;
        total.sealed += batch.sealed;
        total.last_id = batch.last_id;
    }
    let targets = conn
        .conn()
        .write_transaction(|c| fieldtally::push::reseal_all(c, &keys))?;
    println!(
        "Looked at {} submission versions: {} moved to key '{}', {} sealed for the first time.",
        total.scanned,
        total.rotated,
        keys.current_id(),
        total.sealed
    );
    println!("Sealed the secrets of {targets} push targets with the current key.");
    Ok(())
}

/// Argon2 (sign-ins, new users) allocates a 19 MiB block per hash. Once such a block is freed,
/// glibc raises its mmap threshold above it, and later blocks come from the per-thread arenas
/// of the blocking threads and stay resident: a few sign-ins left the server at 300 MB. A fixed
/// threshold keeps large blocks mapped, so they go back to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_system() {
    // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_system() {}

fn main() -> anyhow::Result<()> {
    return_large_blocks_to_the_system();
    init_logging();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => actix_web::rt::System::new().block_on(fieldtally::serve(*args)),
        Command::Migrate(db) => {
            open(&db)?;
            println!("database is up to date");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    role,
                    password_stdin,
                    db,
                },
        } => {
            let (password, generated) = if password_stdin {
                let mut p = String::new();
                std::io::stdin()
                    .read_to_string(&mut p)
                    .context("cannot read the password from standard input")?;
                (p.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (users::generate_app_key(), true)
            };
            let new = NewUser::prepare(&username, &password, Role::parse(&role)?)?;
            let mut conn = open(&db)?;
            conn.conn().write_transaction(|c| users::create(c, &new))?;
            if generated {
                println!("Created user '{username}' with the password: {password}");
            } else {
                println!("Created user '{username}'");
            }
            Ok(())
        }
        Command::Form {
            command: FormCommand::Add { file, publish, db },
        } => add_form(&file, publish, &db),
        Command::Fsck {
            repair,
            grace_secs,
            db,
        } => {
            let mut conn = open(&db)?;
            let blobs = fieldtally::blobs::Blobs::open(&db.data_dir)?;
            let report = fieldtally::fsck::run(
                &mut conn.conn(),
                &blobs,
                std::time::Duration::from_secs(grace_secs),
                repair,
            )?;
            print_json(&report)?;
            if report.is_clean() {
                Ok(())
            } else {
                // A non-zero exit lets scripts and monitoring notice.
                std::process::exit(2)
            }
        }
        Command::Backup { dir, db } => {
            let summary = fieldtally::backup::backup(&db.url(), &db.data_dir, &dir)?;
            print_json(&summary)?;
            if !summary.database {
                eprintln!("PostgreSQL: only the files were copied; dump the database with pg_dump as the README shows.");
            }
            Ok(())
        }
        Command::Restore { dir, db } => {
            let summary = fieldtally::backup::restore(&db.url(), &db.data_dir, &dir)?;
            print_json(&summary)?;
            eprintln!(
                "Backups do not hold the data key file: put it at {} (or pass --data-key-file) before starting the server.",
                db.data_dir.join("data.keys").display()
            );
            if !summary.database {
                eprintln!("PostgreSQL: only the files were restored; restore the database with pg_restore as the README shows.");
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Generate { id },
        } => {
            println!("{}", fieldtally::crypto::DataKeys::generate_line(&id)?);
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate { keys, db },
        } => rotate(&keys, &db),
        Command::Areas {
            command: AreasCommand::Import { file, db },
        } => {
            use fieldtally::areas::import::{self, FileKind};
            let name = file.display().to_string();
            let kind = FileKind::from_name(&name)
                .with_context(|| format!("{name}: give a .csv or .geojson file"))?;
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {name}"))?;
            let mut conn = open(&db)?;
            let report = conn
                .conn()
                .write_transaction(|c| {
                    // The official areas come first, as when the server starts on an empty
                    // database: imported hamlets name their communes.
                    if fieldtally::areas::count(c)? == 0 {
                        fieldtally::areas::shipped::load(c)?;
                    }
                    let report = import::import(c, kind, &bytes)?;
                    // Hamlets may have moved: what supervisors see follows the registry.
                    fieldtally::scope::reindex_all_areas(c)?;
                    // Hamlets may have moved: the figures follow in the same transaction.
                    let indicators = Indicators::in_effect(c)?;
                    indicators::recompute_all(c, &indicators, "area registry changed")?;
                    Ok::<_, fieldtally::error::AppError>(report)
                })
                .with_context(|| format!("{name}: nothing was imported"))?;
            println!(
                "Imported {name}: {} areas added, {} updated, {} successions linked",
                report.created, report.updated, report.linked
            );
            Ok(())
        }
        Command::Indicators { command } => run_indicators(command),
        Command::Tokens {
            command: TokensCommand::RotateSigningKey { token_ttl, db },
        } => {
            let mut conn = open(&db)?;
            let kid = conn
                .conn()
                .write_transaction(|c| fieldtally::auth::signing::rotate(c, token_ttl + 60))?;
            println!("New tokens are now signed with key {kid}; earlier tokens stay valid until they expire.");
            Ok(())
        }
        Command::Subject { command } => run_subject(command),
    }
}

/// The key of the beneficiary named on the command line.
fn beneficiary_key(who: &Beneficiary, conn: &mut db::DbConn) -> anyhow::Result<String> {
    if let Some(key) = &who.key {
        return Ok(key.clone());
    }
    let hamlet = who
        .hamlet
        .as_deref()
        .context("name the beneficiary with --key, or with --hamlet and --part ROLE=VALUE")?;
    let parts = who
        .parts
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(r, v)| (r.trim().to_string(), v.to_string()))
                .with_context(|| format!("--part {p}: expected ROLE=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secrets = conn
        .conn()
        .write_transaction(fieldtally::settings::load_or_create)?;
    Ok(fieldtally::subject::key_of(
        &secrets.beneficiary_key,
        hamlet,
        &parts,
    )?)
}

/// The administrator named by --by, as the audit and access logs record them.
fn administrator(
    conn: &mut db::DbConn,
    username: &str,
) -> anyhow::Result<fieldtally::audit::Actor> {
    let user = users::get(&mut conn.conn(), username)?;
    anyhow::ensure!(
        user.role()? == Role::Admin,
        "'{username}' is not an administrator"
    );
    Ok(fieldtally::audit::Actor {
        id: user.id,
        username: user.username,
    })
}

fn run_subject(command: SubjectCommand) -> anyhow::Result<()> {
    use fieldtally::subject;
    match command {
        SubjectCommand::Find { who, db } => {
            let mut conn = open(&db)?;
            let key = beneficiary_key(&who, &mut conn)?;
            let records = subject::find(&mut conn.conn(), &key)?;
            print_json(&serde_json::json!({ "beneficiary_key": key, "records": records }))
        }
        SubjectCommand::Export {
            who,
            by,
            purpose,
            keys,
            db,
        } => {
            let (path, _) = keys.path(&db.data_dir);
            let keys = fieldtally::crypto::DataKeys::load(&path)?;
            let mut conn = open(&db)?;
            let key = beneficiary_key(&who, &mut conn)?;
            let by = administrator(&mut conn, &by)?;
            let export = conn
                .conn()
                .write_transaction(|c| subject::export(c, &keys, &key, &by, &purpose))?;
            print_json(&export)
        }
        SubjectCommand::Erase {
            who,
            by,
            reason,
            yes,
            db,
        } => {
            let mut conn = open(&db)?;
            let key = beneficiary_key(&who, &mut conn)?;
            let by = administrator(&mut conn, &by)?;
            if !yes {
                let records = subject::find(&mut conn.conn(), &key)?;
                print_json(&serde_json::json!({ "would_erase": records }))?;
                anyhow::bail!("nothing was erased: run again with --yes to erase these");
            }
            let erased = conn.conn().write_transaction(|c| {
                let indicators = Indicators::in_effect(c)?;
                subject::erase(c, &indicators, &key, &by, &reason)
            })?;
            let blobs = fieldtally::blobs::Blobs::open(&db.data_dir)?;
            let files = subject::remove_files(&mut conn.conn(), &blobs, &erased)?;
            print_json(&serde_json::json!({ "erased": erased, "files_removed": files }))
        }
    }
}

fn run_indicators(command: IndicatorsCommand) -> anyhow::Result<()> {
    use fieldtally::indicators::targets;
    match command {
        IndicatorsCommand::Recompute { db } => {
            let mut conn = open(&db)?;
            let report = conn.conn().write_transaction(|c| {
                let indicators = Indicators::in_effect(c)?;
                indicators::recompute_all(c, &indicators, "recomputed on request")
            })?;
            println!(
                "Recomputed the indicators from {} submissions: {} facts, {} figures",
                report.submissions, report.facts, report.cells
            );
            Ok(())
        }
        IndicatorsCommand::Verify { db } => {
            let mut conn = open(&db)?;
            let v = conn.conn().write_transaction(|c| {
                let indicators = Indicators::in_effect(c)?;
                indicators::verify(c, &indicators)
            })?;
            println!(
                "Recomputed {} submissions: {} figures differ, {} facts differ, {} submissions not up to date",
                v.recomputed.submissions, v.cells_differing, v.facts_differing, v.submissions_differing
            );
            for e in &v.examples {
                println!("  {e}");
            }
            if v.identical() {
                println!("The maintained figures equal a full recompute.");
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        IndicatorsCommand::ImportTargets { file, db } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let rows = targets::parse_csv::<targets::TargetInput>(&bytes)
                .with_context(|| format!("{}: nothing was imported", file.display()))?;
            let mut conn = open(&db)?;
            let n = conn
                .conn()
                .write_transaction(|c| {
                    let indicators = Indicators::in_effect(c)?;
                    let index = indicators.area_index(c)?;
                    targets::import_targets(c, indicators.definitions(), &index, &rows)
                })
                .with_context(|| format!("{}: nothing was imported", file.display()))?;
            println!("Imported {n} targets");
            Ok(())
        }
        IndicatorsCommand::ImportBaselines { file, db } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let rows = targets::parse_csv::<targets::BaselineInput>(&bytes)
                .with_context(|| format!("{}: nothing was imported", file.display()))?;
            let mut conn = open(&db)?;
            let n = conn
                .conn()
                .write_transaction(|c| {
                    let indicators = Indicators::in_effect(c)?;
                    let index = indicators.area_index(c)?;
                    targets::import_baselines(c, indicators.definitions(), &index, &rows)
                })
                .with_context(|| format!("{}: nothing was imported", file.display()))?;
            println!("Imported {n} baselines");
            Ok(())
        }
    }
}

/// `fieldtally form add`: an XForm as it is, or a workbook converted like an API upload.
fn add_form(file: &std::path::Path, publish: bool, db: &DatabaseArgs) -> anyhow::Result<()> {
    use fieldtally::forms::{self, NewMedia, NewSource};
    use fieldtally::xlsform;

    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut conn = open(db)?;
    let Some(format) = xlsform::sniff(&bytes, None) else {
        let upload = conn
            .conn()
            .write_transaction(|c| forms::add_version(c, &bytes, publish))?;
        report(&upload.version, upload.created);
        return Ok(());
    };
    let workbook = xlsform::read(&bytes).map_err(fieldtally::error::AppError::from)?;
    let filename = file
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string);
    let stem = file.file_stem().and_then(|n| n.to_str());
    let blobs = fieldtally::blobs::Blobs::open(&db.data_dir)?;
    // Held until the generated media's rows are committed (see `Blobs::lock_shared`).
    let _blob_lock = blobs.lock_shared()?;
    let first = xlsform::time_version(chrono::Utc::now());
    for derived in first..first + 48 {
        let conversion = xlsform::convert(&workbook, stem, derived)
            .map_err(fieldtally::error::AppError::from)?;
        let mut media = Vec::new();
        for (name, content) in &conversion.media {
            media.push(NewMedia {
                filename: name.clone(),
                content_type: "text/csv".into(),
                md5: fieldtally::auth::digest::md5_hex(content),
                sha256: blobs.put(content)?,
                size: content.len() as i64,
            });
        }
        let source = NewSource {
            filename: filename.clone(),
            format: format.as_str().into(),
            content_type: format.content_type().into(),
            bytes: bytes.clone(),
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            warnings: conversion.warnings.clone(),
        };
        let stored = conn.conn().write_transaction(|c| {
            forms::add_generated_version(c, &conversion.xform, &source, &media, publish)
        });
        let (upload, _) = match stored {
            Err(fieldtally::error::AppError::Client {
                code: "version_exists",
                ..
            }) if conversion.version_derived => continue,
            other => other?,
        };
        for w in &conversion.warnings {
            eprintln!("warning: {}", xlsform::describe(w));
        }
        report(&upload.version, upload.created);
        return Ok(());
    }
    anyhow::bail!(
        "every version derived from this hour is taken; set `version` in the settings sheet"
    )
}

fn report(v: &fieldtally::forms::FormVersionInfo, created: bool) {
    let what = if created { "Added" } else { "Already present:" };
    println!(
        "{what} form '{}' version '{}' ({}), md5 {}",
        v.form_id, v.version, v.state, v.md5
    );
}
