//! Exports as background jobs, kept in the database so that any instance can answer for them
//! and none is lost when a server stops. Every instance runs [`run`]: it claims a queued job
//! (or one whose instance stopped sending heartbeats: it crashed, and the job starts over),
//! writes the file to `DATA_DIR/exports/`, and deletes finished files after the retention time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use tokio::sync::Notify;

use super::{Context, Spec};
use crate::db::schema::{export_jobs, users};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::scope::{Capability, Scope};
use crate::users::now;

/// How a job is claimed a second or third time before it is given up.
pub const MAX_ATTEMPTS: i64 = 3;

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";
pub const EXPIRED: &str = "expired";

/// How jobs are run, from the server's flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A running job whose heartbeat is older than this is taken to have lost its instance.
    pub stale_after: chrono::Duration,
    /// Finished files are deleted this long after the job finished.
    pub keep: chrono::Duration,
    /// How often to look for jobs without being woken.
    pub poll: Duration,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = export_jobs)]
#[schema(as = ExportJob)]
pub struct Job {
    pub id: String,
    #[serde(skip)]
    pub user_id: i64,
    pub form_id: String,
    pub format: String,
    #[serde(skip)]
    pub spec: String,
    pub status: String,
    pub total: Option<i64>,
    pub done: i64,
    pub attempts: i64,
    pub file_size: Option<i64>,
    pub error: Option<String>,
    #[serde(skip)]
    pub owner: Option<String>,
    #[serde(skip)]
    pub heartbeat_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

impl Job {
    pub fn spec(&self) -> Result<Spec, AppError> {
        serde_json::from_str(&self.spec)
            .map_err(|_| AppError::internal("the stored export parameters are damaged"))
    }
}

/// The folder of finished export files.
pub fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("exports")
}

/// Where a finished job's file is.
pub fn file_path(data_dir: &Path, job_id: &str) -> PathBuf {
    folder(data_dir).join(format!("{job_id}.export"))
}

/// Where one instance writes a job's file before it is complete.
fn part_path(data_dir: &Path, job_id: &str, owner: &str) -> PathBuf {
    folder(data_dir).join(format!("{job_id}-{owner}.part"))
}

pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub fn create(
    conn: &mut Conn<'_>,
    id: &str,
    user_id: i64,
    spec: &Spec,
    total: i64,
) -> Result<Job, AppError> {
    let text = serde_json::to_string(spec)
        .map_err(|e| AppError::internal(format!("cannot encode the export: {e}")))?;
    Ok(on_conn!(conn, c => diesel::insert_into(export_jobs::table)
        .values((
            export_jobs::id.eq(id),
            export_jobs::user_id.eq(user_id),
            export_jobs::form_id.eq(&spec.form_id),
            export_jobs::format.eq(spec.format.as_str()),
            export_jobs::spec.eq(&text),
            export_jobs::status.eq(QUEUED),
            export_jobs::total.eq(Some(total)),
            export_jobs::done.eq(0i64),
            export_jobs::attempts.eq(0i64),
            export_jobs::created_at.eq(now()),
        ))
        .returning(Job::as_returning())
        .get_result(c))?)
}

/// A job of this user (others' jobs do not exist for them: 404).
pub fn get(conn: &mut Conn<'_>, id: &str, user_id: i64) -> Result<Job, AppError> {
    let job: Option<Job> = on_conn!(conn, c => export_jobs::table
        .find(id)
        .filter(export_jobs::user_id.eq(user_id))
        .select(Job::as_select())
        .first(c)
        .optional())?;
    job.ok_or_else(|| AppError::not_found("unknown_export", "no such export"))
}

/// The user's jobs, newest first.
pub fn list(conn: &mut Conn<'_>, user_id: i64, limit: i64) -> Result<Vec<Job>, AppError> {
    Ok(on_conn!(conn, c => export_jobs::table
        .filter(export_jobs::user_id.eq(user_id))
        .order(export_jobs::created_at.desc())
        .limit(limit)
        .select(Job::as_select())
        .load(c))?)
}

/// Whether some job waits for an instance (read-only, so idle instances do not write).
pub fn any_claimable(conn: &mut Conn<'_>, stale_before: NaiveDateTime) -> Result<bool, AppError> {
    let n: i64 = on_conn!(conn, c => export_jobs::table
        .filter(
            export_jobs::status.eq(QUEUED).or(export_jobs::status
                .eq(RUNNING)
                .and(export_jobs::heartbeat_at.lt(stale_before))),
        )
        .count()
        .get_result(c))?;
    Ok(n > 0)
}

/// Claims the oldest waiting job for `owner`. A job that lost its instance too often is
/// marked failed instead.
pub fn claim(
    conn: &mut Conn<'_>,
    owner: &str,
    stale_before: NaiveDateTime,
) -> Result<Option<Job>, AppError> {
    loop {
        let found: Option<Job> = on_conn!(conn, c => export_jobs::table
            .filter(
                export_jobs::status.eq(QUEUED).or(export_jobs::status
                    .eq(RUNNING)
                    .and(export_jobs::heartbeat_at.lt(stale_before))),
            )
            .order(export_jobs::created_at)
            .select(Job::as_select())
            .first(c)
            .optional())?;
        let Some(job) = found else {
            return Ok(None);
        };
        let t = now();
        if job.attempts >= MAX_ATTEMPTS {
            let message = format!(
                "the export was interrupted {} times (its server stopped while writing it); start it again, perhaps with narrower filters",
                job.attempts
            );
            on_conn!(conn, c => diesel::update(export_jobs::table.find(&job.id))
                .filter(export_jobs::attempts.eq(job.attempts))
                .set((
                    export_jobs::status.eq(FAILED),
                    export_jobs::error.eq(message),
                    export_jobs::finished_at.eq(t),
                ))
                .execute(c))?;
            continue;
        }
        // Another instance may have claimed it since it was read: the attempt count says.
        let won = on_conn!(conn, c => diesel::update(export_jobs::table.find(&job.id))
            .filter(export_jobs::attempts.eq(job.attempts))
            .filter(export_jobs::status.eq(&job.status))
            .set((
                export_jobs::status.eq(RUNNING),
                export_jobs::owner.eq(owner),
                export_jobs::heartbeat_at.eq(t),
                export_jobs::attempts.eq(job.attempts + 1),
                export_jobs::done.eq(0i64),
            ))
            .execute(c))?;
        if won == 1 {
            return Ok(Some(Job {
                status: RUNNING.into(),
                owner: Some(owner.into()),
                attempts: job.attempts + 1,
                done: 0,
                ..job
            }));
        }
    }
}

/// Records progress and the heartbeat; false if the job is no longer this owner's.
pub fn progress(conn: &mut Conn<'_>, id: &str, owner: &str, done: i64) -> Result<bool, AppError> {
    let n = on_conn!(conn, c => diesel::update(export_jobs::table.find(id))
        .filter(export_jobs::owner.eq(owner))
        .filter(export_jobs::status.eq(RUNNING))
        .set((export_jobs::done.eq(done), export_jobs::heartbeat_at.eq(now())))
        .execute(c))?;
    Ok(n == 1)
}

/// Records how a job ended, unless another instance took it over meanwhile.
fn end(
    conn: &mut Conn<'_>,
    id: &str,
    owner: &str,
    outcome: Result<(i64, i64), String>,
) -> Result<(), AppError> {
    let t = now();
    let n = match outcome {
        Ok((done, size)) => on_conn!(conn, c => diesel::update(export_jobs::table.find(id))
            .filter(export_jobs::owner.eq(owner))
            .filter(export_jobs::status.eq(RUNNING))
            .set((
                export_jobs::status.eq(DONE),
                export_jobs::done.eq(done),
                export_jobs::total.eq(done),
                export_jobs::file_size.eq(size),
                export_jobs::finished_at.eq(t),
            ))
            .execute(c))?,
        Err(message) => on_conn!(conn, c => diesel::update(export_jobs::table.find(id))
            .filter(export_jobs::owner.eq(owner))
            .filter(export_jobs::status.eq(RUNNING))
            .set((
                export_jobs::status.eq(FAILED),
                export_jobs::error.eq(message),
                export_jobs::finished_at.eq(t),
            ))
            .execute(c))?,
    };
    if n == 0 {
        tracing::info!(export = %id, "export taken over by another instance");
    }
    Ok(())
}

/// Whether some finished job is past its retention (read-only, like [`any_claimable`]).
pub fn any_expired(conn: &mut Conn<'_>, before: NaiveDateTime) -> Result<bool, AppError> {
    let n: i64 = on_conn!(conn, c => export_jobs::table
        .filter(export_jobs::status.eq_any([DONE, FAILED]))
        .filter(export_jobs::finished_at.lt(before))
        .count()
        .get_result(c))?;
    Ok(n > 0)
}

/// Marks finished jobs older than `before` expired; returns their ids (their files go).
pub fn expire(conn: &mut Conn<'_>, before: NaiveDateTime) -> Result<Vec<String>, AppError> {
    let ids: Vec<String> = on_conn!(conn, c => export_jobs::table
        .filter(export_jobs::status.eq_any([DONE, FAILED]))
        .filter(export_jobs::finished_at.lt(before))
        .select(export_jobs::id)
        .load(c))?;
    if !ids.is_empty() {
        on_conn!(conn, c => diesel::update(export_jobs::table.filter(export_jobs::id.eq_any(&ids)))
            .set(export_jobs::status.eq(EXPIRED))
            .execute(c))?;
    }
    Ok(ids)
}

/// The scope the job runs with: its creator's, as the creator is now.
fn scope_of(conn: &mut Conn<'_>, user_id: i64) -> Result<Scope, AppError> {
    let user: Option<crate::users::User> = on_conn!(conn, c => users::table
        .find(user_id)
        .select(crate::users::User::as_select())
        .first(c)
        .optional())?;
    let user = user.ok_or_else(|| AppError::forbidden("the user who asked for it is gone"))?;
    Scope::load(conn, user.id, &user.username, user.role()?)
}

/// Produces one claimed job's file.
async fn execute(
    ctx: &Context,
    data_dir: &Path,
    owner: &str,
    job: &Job,
) -> Result<(i64, i64), AppError> {
    let spec = job.spec()?;
    let user_id = job.user_id;
    let s = spec.clone();
    let (layout, selection) = ctx
        .db
        .read(move |conn| {
            let scope = scope_of(conn, user_id)?;
            scope.require(Capability::Export)?;
            if s.purpose.is_some() {
                scope.require(Capability::ReadSensitive)?;
            }
            Ok((super::layout(conn, &s)?, s.selection(scope.visibility())))
        })
        .await?;
    std::fs::create_dir_all(folder(data_dir))?;
    let path = part_path(data_dir, &job.id, owner);
    let db = ctx.db.clone();
    let done = super::produce(ctx, &spec, layout, selection, &path, |done| {
        let (db, id, owner) = (db.clone(), job.id.clone(), owner.to_string());
        async move {
            db.write(move |conn| progress(conn, &id, &owner, done))
                .await
        }
    })
    .await?;
    let size = std::fs::metadata(&path)?.len() as i64;
    std::fs::rename(&path, file_path(data_dir, &job.id))?;
    Ok((done, size))
}

/// Claims and runs jobs, and deletes expired files, until the server stops. Looks for work
/// every `settings.poll` (jobs queued by other instances, jobs whose instance crashed) and at
/// once when `wake` is notified (a job queued by this instance).
pub async fn run(ctx: Context, data_dir: PathBuf, settings: Settings, wake: Arc<Notify>) {
    let owner = new_id();
    loop {
        if let Err(e) = step(&ctx, &data_dir, &owner, &settings).await {
            tracing::warn!(error = %e, "export jobs");
        }
        tokio::select! {
            () = tokio::time::sleep(settings.poll) => {}
            () = wake.notified() => {}
        }
    }
}

async fn step(
    ctx: &Context,
    data_dir: &Path,
    owner: &str,
    settings: &Settings,
) -> Result<(), AppError> {
    let keep_before = now() - settings.keep;
    let expired = match ctx
        .db
        .read(move |conn| any_expired(conn, keep_before))
        .await?
    {
        true => ctx.db.write(move |conn| expire(conn, keep_before)).await?,
        false => Vec::new(),
    };
    for id in expired {
        match std::fs::remove_file(file_path(data_dir, &id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "cannot delete an expired export"),
        }
    }
    loop {
        let stale_before = now() - settings.stale_after;
        if !ctx
            .db
            .read(move |conn| any_claimable(conn, stale_before))
            .await?
        {
            return Ok(());
        }
        let me = owner.to_string();
        let Some(job) = ctx
            .db
            .write(move |conn| claim(conn, &me, stale_before))
            .await?
        else {
            return Ok(());
        };
        tracing::info!(export = %job.id, attempt = job.attempts, "export started");
        let outcome = execute(ctx, data_dir, owner, &job)
            .await
            .map_err(|e| match e {
                AppError::Client { message, .. } | AppError::Detailed { message, .. } => message,
                other => {
                    tracing::warn!(export = %job.id, error = %other, "export failed");
                    "the export failed on the server; see its log".to_string()
                }
            });
        let failed = outcome.is_err();
        if failed {
            let _ = std::fs::remove_file(part_path(data_dir, &job.id, owner));
        }
        let (id, me) = (job.id.clone(), owner.to_string());
        ctx.db
            .write(move |conn| end(conn, &id, &me, outcome.clone()))
            .await?;
        tracing::info!(export = %job.id, failed, "export ended");
    }
}
