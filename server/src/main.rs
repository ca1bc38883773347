//! The `fieldtally` command: serve, migrate, and administer users and forms.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldtally::config::{DatabaseArgs, ServeArgs};
use fieldtally::db;
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
    }
}
