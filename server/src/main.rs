//! The `fieldtally` command: serve, migrate, and administer users and forms.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldtally::config::{DatabaseArgs, ServeArgs};
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
    Serve(ServeArgs),
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
        #[arg(long, value_parser = ["admin", "collector"])]
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
    /// Add a form version from an XForm XML file.
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIELDTALLY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => actix_web::rt::System::new().block_on(fieldtally::serve(args)),
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
        } => {
            let xml =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut conn = open(&db)?;
            let upload = conn
                .conn()
                .write_transaction(|c| fieldtally::forms::add_version(c, &xml, publish))?;
            let v = upload.version;
            let what = if upload.created {
                "Added"
            } else {
                "Already present:"
            };
            println!(
                "{what} form '{}' version '{}' ({}), md5 {}",
                v.form_id, v.version, v.state, v.md5
            );
            Ok(())
        }
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
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
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
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
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
