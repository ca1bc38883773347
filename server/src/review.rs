//! Reviewing submissions: states, who changed them and why, comment threads, bulk review.
//!
//! States: `received` → `approved` | `rejected` | `has_issues`; `edited` is set when a phone
//! sends an edit. Every change records who, when and a comment (required for `rejected` and
//! `has_issues`), and is written to the audit log in the same transaction. What a user may
//! review is decided by [`crate::scope`].

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::db::schema::{submission_comments, submission_reviews, submissions, users};
use crate::db::Conn;
use crate::error::AppError;
use crate::indicators::{self, Indicators};
use crate::scope::{self, Capability, Scope};
use crate::users::now;
use crate::{in_area_with_flag, on_conn, visible_submissions};

/// Longest comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;
/// Most submissions one bulk review may change: one transaction holds the writer for its
/// duration, so larger sets are split by narrowing the filter.
pub const MAX_BULK: i64 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Received,
    Approved,
    Rejected,
    HasIssues,
    Edited,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Received,
        State::Approved,
        State::Rejected,
        State::HasIssues,
        State::Edited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Received => crate::submissions::STATE_RECEIVED,
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::HasIssues => "has_issues",
            State::Edited => crate::submissions::STATE_EDITED,
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The states a reviewer may set; `received` and `edited` come from phones.
    pub fn parse_decision(s: &str) -> Result<State, AppError> {
        match State::parse(s) {
            Some(st @ (State::Approved | State::Rejected | State::HasIssues)) => Ok(st),
            _ => Err(AppError::bad_request(
                "bad_state",
                format!("'{s}' is not a review decision: use approved, rejected or has_issues"),
            )),
        }
    }

    fn needs_comment(self) -> bool {
        matches!(self, State::Rejected | State::HasIssues)
    }
}

/// A reviewer's decision, checked.
#[derive(Debug, Clone)]
pub struct Decision {
    pub state: State,
    pub comment: Option<String>,
}

impl Decision {
    pub fn new(state: &str, comment: Option<&str>) -> Result<Decision, AppError> {
        let state = State::parse_decision(state)?;
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        if let Some(c) = comment {
            check_length(c)?;
        }
        if state.needs_comment() && comment.is_none() {
            return Err(AppError::bad_request(
                "comment_required",
                format!(
                    "say why: a comment is required to mark a submission {}",
                    state.as_str()
                ),
            ));
        }
        Ok(Decision {
            state,
            comment: comment.map(str::to_string),
        })
    }
}

fn check_length(text: &str) -> Result<(), AppError> {
    if text.chars().count() > MAX_COMMENT_CHARS {
        return Err(AppError::bad_request(
            "comment_too_long",
            format!("a comment may have at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A submission as review sees it.
struct Target {
    id: i64,
    instance_id: String,
    state: String,
}

fn target(conn: &mut Conn<'_>, scope: &Scope, instance_id: &str) -> Result<Target, AppError> {
    let id =
        crate::submissions::submission_of(conn, instance_id).map_err(|_| scope::not_visible())?;
    scope::ensure_visible(conn, scope, id)?;
    let (instance_id, state): (String, String) = on_conn!(conn, c => submissions::table
        .find(id)
        .select((submissions::instance_id, submissions::review_state))
        .first(c))?;
    Ok(Target {
        id,
        instance_id,
        state,
    })
}

/// Records one state change: history row, current state, audit entry.
fn apply(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    actor: &Actor,
    t: &Target,
    state: State,
    comment: Option<&str>,
    bulk: bool,
) -> Result<(), AppError> {
    let at = now();
    on_conn!(conn, c => diesel::insert_into(submission_reviews::table)
        .values((
            submission_reviews::submission_id.eq(t.id),
            submission_reviews::from_state.eq(&t.state),
            submission_reviews::state.eq(state.as_str()),
            submission_reviews::comment.eq(comment),
            submission_reviews::user_id.eq(actor.id),
            submission_reviews::created_at.eq(at),
        ))
        .execute(c))?;
    on_conn!(conn, c => diesel::update(submissions::table.find(t.id))
        .set((
            submissions::review_state.eq(state.as_str()),
            submissions::updated_at.eq(at),
        ))
        .execute(c))?;
    // In the same transaction: the confirmed and provisional figures follow the decision.
    indicators::refresh_submission(conn, indicators, t.id, Some(actor.id))?;
    crate::changes::record(
        conn,
        t.id,
        &t.instance_id,
        crate::changes::Kind::ReviewChanged,
        at,
    )?;
    crate::push::webhook::enqueue_submission_event(
        conn,
        t.id,
        crate::push::webhook::REVIEW_CHANGED,
        Some(&t.state),
    )?;
    audit::record(
        conn,
        actor,
        "submission.review",
        Some(&t.instance_id),
        json!({ "from": t.state, "to": state.as_str(), "bulk": bulk }),
    )
}

/// What a single review returns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reviewed {
    pub instance_id: String,
    pub review_state: &'static str,
    pub previous_state: String,
}

/// Reviews one submission. Runs in the writer.
pub fn review_one(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    scope: &Scope,
    instance_id: &str,
    decision: &Decision,
) -> Result<Reviewed, AppError> {
    scope.require(Capability::Review)?;
    let t = target(conn, scope, instance_id)?;
    apply(
        conn,
        indicators,
        &Actor::from(scope),
        &t,
        decision.state,
        decision.comment.as_deref(),
        false,
    )?;
    Ok(Reviewed {
        instance_id: t.instance_id,
        review_state: decision.state.as_str(),
        previous_state: t.state,
    })
}

/// Records that a phone replaced the submission with an edit. Runs inside
/// [`crate::submissions::store`]'s write.
pub fn record_edit(
    conn: &mut Conn<'_>,
    submission_id: i64,
    from_state: &str,
    collector_id: i64,
    at: NaiveDateTime,
) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::insert_into(submission_reviews::table)
        .values((
            submission_reviews::submission_id.eq(submission_id),
            submission_reviews::from_state.eq(from_state),
            submission_reviews::state.eq(State::Edited.as_str()),
            submission_reviews::comment.eq(None::<String>),
            submission_reviews::user_id.eq(collector_id),
            submission_reviews::created_at.eq(at),
        ))
        .execute(c))?;
    Ok(())
}

/// Which submissions a bulk review covers: a list of instanceIDs or a filter.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = BulkReviewFilter)]
pub struct BulkFilter {
    pub form: Option<String>,
    /// Current review state.
    pub state: Option<String>,
    pub collector: Option<String>,
    /// An area code the submissions lie in (hamlet, commune, district or province).
    #[serde(default)]
    pub area: Option<String>,
    /// A flag their current versions carry (`outside_district`, `low_accuracy`, …).
    #[serde(default)]
    pub flag: Option<String>,
    /// First day received (Vietnam time), inclusive.
    pub received_from: Option<NaiveDate>,
    /// Last day received (Vietnam time), inclusive.
    pub received_to: Option<NaiveDate>,
}

impl BulkFilter {
    /// The received-time range in stored (UTC) time: `[from, until)`.
    pub fn received_range(&self) -> (Option<NaiveDateTime>, Option<NaiveDateTime>) {
        (
            self.received_from.map(day_start_utc),
            self.received_to
                .and_then(|d| d.succ_opt())
                .map(day_start_utc),
        )
    }
}

/// Vietnam's offset from UTC (no daylight saving time): days people pick are Vietnamese days.
pub const LOCAL_OFFSET_HOURS: i64 = 7;

/// When a Vietnamese calendar day starts, in UTC.
pub fn day_start_utc(day: NaiveDate) -> NaiveDateTime {
    day.and_time(chrono::NaiveTime::MIN) - chrono::Duration::hours(LOCAL_OFFSET_HOURS)
}

/// A stored (UTC) time as Vietnamese local time.
pub fn local_time(t: NaiveDateTime) -> NaiveDateTime {
    t + chrono::Duration::hours(LOCAL_OFFSET_HOURS)
}

#[derive(Debug, Clone)]
pub enum Selection {
    Ids(Vec<String>),
    Filter(BulkFilter),
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Submissions the selection covers whose state differs from the decision.
    pub count: i64,
    /// Whether anything was changed (false for a dry run).
    pub applied: bool,
}

/// Resolves the selection to the submissions it would change, within the scope.
fn select(
    conn: &mut Conn<'_>,
    scope: &Scope,
    sel: &Selection,
    to: State,
) -> Result<Vec<Target>, AppError> {
    let visibility = scope.visibility();
    let rows: Vec<(i64, String, String)> = match sel {
        Selection::Ids(ids) => {
            if ids.is_empty() {
                return Err(AppError::bad_request(
                    "empty_selection",
                    "select at least one submission",
                ));
            }
            if ids.len() as i64 > MAX_BULK {
                return Err(too_many());
            }
            let mut rows = Vec::with_capacity(ids.len());
            for instance_id in ids {
                let t = target(conn, scope, instance_id).map_err(|_| {
                    AppError::not_found(
                        "unknown_submission",
                        format!("no such submission: {instance_id}; nothing was changed"),
                    )
                })?;
                if !rows.iter().any(|(id, _, _)| *id == t.id) {
                    rows.push((t.id, t.instance_id, t.state));
                }
            }
            rows
        }
        Selection::Filter(f) => {
            let collector_id = match &f.collector {
                Some(name) => Some(crate::users::get(conn, name)?.id),
                None => None,
            };
            if let Some(s) = &f.state {
                if State::parse(s).is_none() {
                    return Err(AppError::bad_request(
                        "bad_state",
                        format!("unknown review state '{s}'"),
                    ));
                }
            }
            let (from, until) = f.received_range();
            on_conn!(conn, c => {
                let mut q = submissions::table
                    .select((submissions::id, submissions::instance_id, submissions::review_state))
                    .order(submissions::id)
                    .limit(MAX_BULK + 1)
                    .into_boxed();
                if let Some(v) = &f.form {
                    q = q.filter(submissions::form_id.eq(v));
                }
                if let Some(v) = &f.state {
                    q = q.filter(submissions::review_state.eq(v));
                }
                if let Some(v) = collector_id {
                    q = q.filter(submissions::collector_id.eq(v));
                }
                if let Some(v) = from {
                    q = q.filter(submissions::created_at.ge(v));
                }
                if let Some(v) = until {
                    q = q.filter(submissions::created_at.lt(v));
                }
                q = q.filter(submissions::review_state.ne(to.as_str()));
                q = in_area_with_flag!(q, &f.area, &f.flag);
                visible_submissions!(q, &visibility).load(c)
            })?
        }
    };
    let targets: Vec<Target> = rows
        .into_iter()
        .filter(|(_, _, state)| state != to.as_str())
        .map(|(id, instance_id, state)| Target {
            id,
            instance_id,
            state,
        })
        .collect();
    if targets.len() as i64 > MAX_BULK {
        return Err(too_many());
    }
    Ok(targets)
}

fn too_many() -> AppError {
    AppError::bad_request(
        "too_many",
        format!(
            "a bulk review changes at most {MAX_BULK} submissions at once; narrow the selection"
        ),
    )
}

/// Reviews many submissions at once, all or none. With `dry_run` it only counts (what the
/// page shows before the reviewer confirms); `expected` makes the change refuse to go ahead
/// if the count differs from the one confirmed. Runs in the writer (or on a read connection
/// for a dry run).
pub fn review_bulk(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    scope: &Scope,
    selection: &Selection,
    decision: &Decision,
    dry_run: bool,
    expected: Option<i64>,
) -> Result<BulkOutcome, AppError> {
    scope.require(Capability::Review)?;
    let targets = select(conn, scope, selection, decision.state)?;
    let count = targets.len() as i64;
    if let Some(e) = expected {
        if e != count {
            return Err(AppError::conflict(
                "count_changed",
                format!("{count} submissions match now, not the {e} you confirmed; look again and confirm"),
            ));
        }
    }
    if dry_run {
        return Ok(BulkOutcome {
            count,
            applied: false,
        });
    }
    let actor = Actor::from(scope);
    for t in &targets {
        apply(
            conn,
            indicators,
            &actor,
            t,
            decision.state,
            decision.comment.as_deref(),
            true,
        )?;
    }
    Ok(BulkOutcome {
        count,
        applied: true,
    })
}

/// One state change in a submission's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReviewEvent {
    pub from_state: String,
    pub state: String,
    pub comment: Option<String>,
    pub by: String,
    pub at: NaiveDateTime,
}

/// The review history of a visible submission, oldest first.
pub fn history(conn: &mut Conn<'_>, submission_id: i64) -> Result<Vec<ReviewEvent>, AppError> {
    let rows: Vec<(String, String, Option<String>, String, NaiveDateTime)> = on_conn!(conn, c => submission_reviews::table
        .inner_join(users::table.on(users::id.eq(submission_reviews::user_id)))
        .filter(submission_reviews::submission_id.eq(submission_id))
        .order(submission_reviews::id)
        .select((
            submission_reviews::from_state,
            submission_reviews::state,
            submission_reviews::comment,
            users::username,
            submission_reviews::created_at,
        ))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(from_state, state, comment, by, at)| ReviewEvent {
            from_state,
            state,
            comment,
            by,
            at,
        })
        .collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Comment {
    pub id: i64,
    pub author: String,
    pub body: String,
    pub created_at: NaiveDateTime,
}

/// The comment thread of a submission the scope may see, oldest first.
pub fn comments(
    conn: &mut Conn<'_>,
    scope: &Scope,
    instance_id: &str,
) -> Result<Vec<Comment>, AppError> {
    scope.require(Capability::ReadSubmissions)?;
    let t = target(conn, scope, instance_id)?;
    thread(conn, t.id)
}

pub fn thread(conn: &mut Conn<'_>, submission_id: i64) -> Result<Vec<Comment>, AppError> {
    let rows: Vec<(i64, String, String, NaiveDateTime)> = on_conn!(conn, c => submission_comments::table
        .inner_join(users::table.on(users::id.eq(submission_comments::user_id)))
        .filter(submission_comments::submission_id.eq(submission_id))
        .order(submission_comments::id)
        .select((
            submission_comments::id,
            users::username,
            submission_comments::body,
            submission_comments::created_at,
        ))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(id, author, body, created_at)| Comment {
            id,
            author,
            body,
            created_at,
        })
        .collect())
}

/// Adds a comment to a submission's thread. Runs in the writer.
pub fn add_comment(
    conn: &mut Conn<'_>,
    scope: &Scope,
    instance_id: &str,
    body: &str,
) -> Result<Comment, AppError> {
    scope.require(Capability::Comment)?;
    let body = body.trim();
    if body.is_empty() {
        return Err(AppError::bad_request(
            "empty_comment",
            "write something in the comment",
        ));
    }
    check_length(body)?;
    let t = target(conn, scope, instance_id)?;
    let at = now();
    let id: i64 = on_conn!(conn, c => diesel::insert_into(submission_comments::table)
        .values((
            submission_comments::submission_id.eq(t.id),
            submission_comments::user_id.eq(scope.user_id),
            submission_comments::body.eq(body),
            submission_comments::created_at.eq(at),
        ))
        .returning(submission_comments::id)
        .get_result(c))?;
    audit::record(
        conn,
        &Actor::from(scope),
        "submission.comment",
        Some(&t.instance_id),
        json!({ "comment_id": id }),
    )?;
    Ok(Comment {
        id,
        author: scope.username.clone(),
        body: body.to_string(),
        created_at: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_need_a_reason_to_reject_or_ask_for_a_fix() {
        assert!(Decision::new("approved", None).is_ok());
        assert!(Decision::new("approved", Some("  ")).is_ok_and(|d| d.comment.is_none()));
        for state in ["rejected", "has_issues"] {
            let err = Decision::new(state, None).unwrap_err();
            assert!(err.to_string().contains("comment is required"), "{err}");
            assert!(Decision::new(state, Some("   ")).is_err());
            let d = Decision::new(state, Some(" photo is blurred ")).expect("with a reason");
            assert_eq!(d.comment.as_deref(), Some("photo is blurred"));
        }
        for state in ["received", "edited", "approve", ""] {
            assert!(Decision::new(state, Some("x")).is_err(), "{state}");
        }
        let long = "x".repeat(MAX_COMMENT_CHARS + 1);
        assert!(Decision::new("approved", Some(&long)).is_err());
    }

    #[test]
    fn days_are_vietnamese_days() {
        let day = NaiveDate::from_ymd_opt(2025, 7, 1).expect("date");
        let f = BulkFilter {
            received_from: Some(day),
            received_to: Some(day),
            ..Default::default()
        };
        let (from, until) = f.received_range();
        assert_eq!(
            from.map(|t| t.to_string()).as_deref(),
            Some("2025-06-30 17:00:00")
        );
        assert_eq!(
            until.map(|t| t.to_string()).as_deref(),
            Some("2025-07-01 17:00:00")
        );
        let utc = day.and_hms_opt(18, 30, 0).expect("time");
        assert_eq!(local_time(utc).to_string(), "2025-07-02 01:30:00");
    }

    #[test]
    fn states_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::HasIssues.as_str(), "has_issues");
    }
}
