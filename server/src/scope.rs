//! Who may see and do what: the one place that decides which submissions a user may see,
//! review or comment on, and which kinds of route a role may use.
//!
//! Every handler (REST API and web page) turns its caller into a [`Scope`] and asks it: routes
//! with [`Scope::require`], queries over submissions with [`visible_submissions!`], single
//! submissions with [`ensure_visible`]. No other module decides visibility.

use std::collections::BTreeSet;

use diesel::prelude::*;

use crate::db::schema::submissions;
use crate::db::Conn;
use crate::error::AppError;
use crate::users::{self, Role};
use crate::{insert_rows, on_conn};

/// The kinds of thing a route does, each allowed to some roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Users, forms, areas: the administrator's work.
    Administer,
    /// Read form definitions and their versions.
    ReadForms,
    /// List and read submissions (which ones: [`Scope::visibility`]).
    ReadSubmissions,
    /// Change a submission's review state, alone or in bulk.
    Review,
    /// Write in a submission's comment thread.
    Comment,
    /// Read the audit log.
    ReadAudit,
    /// Open sealed personal data (sensitive values, sealed XML) of the submissions one may see,
    /// for a stated purpose that goes to the access log.
    ReadSensitive,
    /// Read indicator definitions, values, targets, baselines and closed periods.
    ReadIndicators,
    /// Import targets and baselines, close reporting periods: the province's work.
    ManageIndicators,
    /// Download exports of submissions (which ones: [`Scope::visibility`]).
    Export,
    /// Sign in to the web page.
    UseWebPage,
    /// Download forms and send submissions over OpenRosa.
    Collect,
}

impl Capability {
    /// The role × capability table.
    pub fn allows(self, role: Role) -> bool {
        use Role::*;
        match self {
            Capability::Administer => role == Admin,
            Capability::ReadForms => {
                matches!(role, Admin | ProvinceOfficer | Supervisor | ApiClient)
            }
            Capability::ReadSubmissions => true,
            Capability::Review => matches!(role, Admin | ProvinceOfficer | Supervisor),
            Capability::Comment => matches!(role, Admin | ProvinceOfficer | Supervisor | Collector),
            Capability::ReadAudit => matches!(role, Admin | ProvinceOfficer),
            Capability::ReadSensitive => matches!(role, Admin | ProvinceOfficer | Supervisor),
            Capability::ReadIndicators => matches!(role, Admin | ProvinceOfficer | ApiClient),
            Capability::ManageIndicators => matches!(role, Admin | ProvinceOfficer),
            Capability::Export => matches!(role, Admin | ProvinceOfficer | Supervisor | ApiClient),
            Capability::UseWebPage => {
                matches!(role, Admin | ProvinceOfficer | Supervisor | Collector)
            }
            Capability::Collect => role != ApiClient,
        }
    }

    fn refusal(self) -> &'static str {
        match self {
            Capability::Administer => "this needs the administrator role",
            Capability::ReadForms => "your role cannot read form definitions",
            Capability::ReadSubmissions => "your role cannot read submissions",
            Capability::Review => "your role cannot review submissions",
            Capability::Comment => "your role cannot comment on submissions",
            Capability::ReadAudit => "the audit log is for administrators and province officers",
            Capability::ReadSensitive => "your role cannot open protected personal data",
            Capability::ReadIndicators => "your role cannot read indicator figures",
            Capability::ManageIndicators => {
                "targets, baselines and closing periods are for the province"
            }
            Capability::Export => "your role cannot export submissions",
            Capability::UseWebPage => "service accounts cannot sign in to the web page",
            Capability::Collect => "service accounts cannot send submissions",
        }
    }
}

/// What an API key (or an access token exchanged for one) was granted. A request made with a
/// key may do only what both its account's role and its scopes allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyScope {
    ReadIndicators,
    ReadSubmissions,
    ReadSensitive,
    Export,
    Administer,
}

impl KeyScope {
    pub const ALL: [KeyScope; 5] = [
        KeyScope::ReadIndicators,
        KeyScope::ReadSubmissions,
        KeyScope::ReadSensitive,
        KeyScope::Export,
        KeyScope::Administer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::ReadIndicators => "read_indicators",
            KeyScope::ReadSubmissions => "read_submissions",
            KeyScope::ReadSensitive => "read_sensitive",
            KeyScope::Export => "export",
            KeyScope::Administer => "administer",
        }
    }

    pub fn parse(s: &str) -> Result<KeyScope, AppError> {
        KeyScope::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                AppError::bad_request(
                    "bad_scope",
                    format!("unknown scope '{s}': use read_indicators, read_submissions, read_sensitive, export or administer"),
                )
            })
    }

    /// The scope × capability table: the one place scopes map onto capabilities. Reading form
    /// definitions comes with every scope that reads or exports data described by them; the web
    /// page and OpenRosa are never reachable with a key.
    pub fn grants(self, capability: Capability) -> bool {
        use Capability as C;
        match self {
            KeyScope::ReadIndicators => matches!(capability, C::ReadIndicators),
            KeyScope::ReadSubmissions => matches!(capability, C::ReadSubmissions | C::ReadForms),
            KeyScope::ReadSensitive => matches!(capability, C::ReadSensitive),
            KeyScope::Export => matches!(capability, C::Export | C::ReadForms),
            KeyScope::Administer => matches!(
                capability,
                C::Administer
                    | C::ManageIndicators
                    | C::ReadAudit
                    | C::Review
                    | C::Comment
                    | C::ReadForms
            ),
        }
    }

    /// Parses a space-separated list as stored.
    pub fn parse_list(s: &str) -> Result<Vec<KeyScope>, AppError> {
        let mut scopes = s
            .split_whitespace()
            .map(KeyScope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    pub fn join(scopes: &[KeyScope]) -> String {
        scopes
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Which submissions a user may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Every submission in the province.
    All,
    /// Only the submissions this collector (user id) sent.
    SentBy(i64),
    /// Submissions whose hamlet lies in one of these areas (commune codes, or district codes
    /// for activity dates before 1 July 2025).
    Areas(Vec<String>),
}

/// A caller and everything needed to decide what they may see and do.
#[derive(Debug, Clone)]
pub struct Scope {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    /// The areas a supervisor covers; empty for other roles.
    pub areas: Vec<String>,
    /// The scopes of the API key the request came with; `None` for a person's own sign-in.
    pub key_scopes: Option<Vec<KeyScope>>,
}

impl Scope {
    /// Builds the scope of an authenticated user, reading a supervisor's areas.
    pub fn load(
        conn: &mut Conn<'_>,
        user_id: i64,
        username: &str,
        role: Role,
    ) -> Result<Scope, AppError> {
        let areas = if role == Role::Supervisor {
            users::areas(conn, user_id)?
        } else {
            Vec::new()
        };
        Ok(Scope {
            user_id,
            username: username.to_string(),
            role,
            areas,
            key_scopes: None,
        })
    }

    pub fn may(&self, capability: Capability) -> bool {
        capability.allows(self.role) && self.key_grants(capability)
    }

    fn key_grants(&self, capability: Capability) -> bool {
        self.key_scopes
            .as_ref()
            .is_none_or(|scopes| scopes.iter().any(|k| k.grants(capability)))
    }

    /// 403 unless the role has the capability (and, with an API key, one of its scopes grants it).
    pub fn require(&self, capability: Capability) -> Result<(), AppError> {
        if !capability.allows(self.role) {
            return Err(AppError::forbidden(capability.refusal()));
        }
        if !self.key_grants(capability) {
            let needed: Vec<&str> = KeyScope::ALL
                .into_iter()
                .filter(|k| k.grants(capability))
                .map(KeyScope::as_str)
                .collect();
            return Err(AppError::client(
                actix_web::http::StatusCode::FORBIDDEN,
                "insufficient_scope",
                match needed.is_empty() {
                    true => "this cannot be done with an API key".to_string(),
                    false => format!("this API key needs the scope {}", needed.join(" or ")),
                },
            ));
        }
        Ok(())
    }

    pub fn visibility(&self) -> Visibility {
        match self.role {
            Role::Admin | Role::ProvinceOfficer | Role::ApiClient => Visibility::All,
            Role::Collector => Visibility::SentBy(self.user_id),
            Role::Supervisor => Visibility::Areas(self.areas.clone()),
        }
    }
}

/// Restricts a boxed diesel query over `submissions` (possibly joined) to what a
/// [`Visibility`] allows. A macro, not a function, so that the same code expands for both
/// backends inside [`on_conn!`].
///
/// A supervisor sees a submission when its hamlet lies in one of their areas: the areas a
/// submission lies in are kept in `submission_areas` by [`index_areas`].
#[macro_export]
macro_rules! visible_submissions {
    ($query:expr, $visibility:expr) => {{
        let query = $query;
        match $visibility {
            $crate::scope::Visibility::All => query,
            $crate::scope::Visibility::SentBy(collector) => {
                query.filter($crate::db::schema::submissions::collector_id.eq(*collector))
            }
            $crate::scope::Visibility::Areas(codes) => {
                use $crate::db::schema::submission_areas;
                query.filter(
                    $crate::db::schema::submissions::id.eq_any(
                        submission_areas::table
                            .filter(submission_areas::area_code.eq_any(codes.clone()))
                            .select(submission_areas::submission_id),
                    ),
                )
            }
        }
    }};
}

/// Restricts a boxed diesel query over `submission_changes` to the changes of submissions a
/// [`Visibility`] allows, as [`visible_submissions!`] does for the submissions themselves. A
/// deleted submission is judged by what [`crate::submissions::delete`] kept of it: its collector
/// and the areas it lay in.
#[macro_export]
macro_rules! visible_changes {
    ($query:expr, $visibility:expr) => {{
        use $crate::db::schema::{
            deleted_submission_areas, deleted_submissions, submission_areas, submission_changes,
            submissions,
        };
        let query = $query;
        match $visibility {
            $crate::scope::Visibility::All => query,
            $crate::scope::Visibility::SentBy(collector) => query.filter(
                submission_changes::submission_id
                    .eq_any(
                        submissions::table
                            .filter(submissions::collector_id.eq(*collector))
                            .select(submissions::id),
                    )
                    .or(submission_changes::submission_id.eq_any(
                        deleted_submissions::table
                            .filter(deleted_submissions::collector_id.eq(*collector))
                            .select(deleted_submissions::submission_id),
                    )),
            ),
            $crate::scope::Visibility::Areas(codes) => query.filter(
                submission_changes::submission_id
                    .eq_any(
                        submission_areas::table
                            .filter(submission_areas::area_code.eq_any(codes.clone()))
                            .select(submission_areas::submission_id),
                    )
                    .or(submission_changes::submission_id.eq_any(
                        deleted_submission_areas::table
                            .filter(deleted_submission_areas::area_code.eq_any(codes.clone()))
                            .select(deleted_submission_areas::submission_id),
                    )),
            ),
        }
    }};
}

/// Narrows a boxed diesel query over `submissions` to those lying in an area (any level, as
/// [`index_areas`] records them) and whose current version carries a flag. Shared by the list,
/// the queue and bulk review so that one filter means the same everywhere.
#[macro_export]
macro_rules! in_area_with_flag {
    ($query:expr, $area:expr, $flag:expr) => {{
        use $crate::db::schema::{submission_areas, submission_flags, submission_versions};
        let mut query = $query;
        if let Some(area) = $area {
            query = query.filter(
                $crate::db::schema::submissions::id.eq_any(
                    submission_areas::table
                        .filter(submission_areas::area_code.eq(area.clone()))
                        .select(submission_areas::submission_id),
                ),
            );
        }
        if let Some(flag) = $flag {
            query = query.filter(
                $crate::db::schema::submissions::id.eq_any(
                    submission_versions::table
                        .inner_join(submission_flags::table)
                        .filter(submission_versions::is_current.eq(true))
                        .filter(submission_flags::flag.eq(flag.clone()))
                        .select(submission_versions::submission_id),
                ),
            );
        }
        query
    }};
}

/// Records the area codes the submission's current version lies in: its hamlet, the hamlet's
/// commune, district and province on the activity date, and its commune today. A supervisor
/// of a commune therefore sees the hamlets of that commune as they were on each activity date,
/// and a supervisor of a post-reform commune also sees the earlier work of the hamlets it now
/// holds. Runs in the writer whenever the current version changes, and for every submission
/// after an area import.
pub fn index_areas(conn: &mut Conn<'_>, submission_id: i64) -> Result<(), AppError> {
    use crate::db::schema::{submission_areas, submission_versions};
    let current: Option<(Option<String>, Option<chrono::NaiveDate>)> = on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::submission_id.eq(submission_id))
        .filter(submission_versions::is_current.eq(true))
        .select((submission_versions::hamlet_code, submission_versions::activity_date))
        .first(c)
        .optional())?;
    let codes = match current {
        Some((Some(hamlet), activity_date)) => area_codes(conn, &[(&hamlet, activity_date)])?
            .pop()
            .unwrap_or_default(),
        _ => BTreeSet::new(),
    };
    on_conn!(conn, c => diesel::delete(
        submission_areas::table.filter(submission_areas::submission_id.eq(submission_id)),
    )
    .execute(c))?;
    add_area_index(conn, &[(submission_id, &codes)])
}

/// The codes of the areas a submission from `hamlet` with `activity_date` lies in, for each
/// such pair: the hamlet's chain on the activity date (today without one) and, if a reform has
/// moved the hamlet since, its chain today.
pub fn area_codes(
    conn: &mut Conn<'_>,
    places: &[(&str, Option<chrono::NaiveDate>)],
) -> Result<Vec<BTreeSet<String>>, AppError> {
    let mut hamlets: Vec<&str> = places.iter().map(|(h, _)| *h).collect();
    hamlets.sort_unstable();
    hamlets.dedup();
    let versions = crate::areas::versions_of_all(conn, &hamlets)?;
    let today = crate::areas::today();
    let starts: Vec<Vec<&crate::areas::Area>> = places
        .iter()
        .map(|(hamlet, activity_date)| {
            let versions = versions.get(*hamlet).map(Vec::as_slice).unwrap_or_default();
            let on = |date| versions.iter().find(|a| a.valid_on(date));
            let (then, now) = (on(activity_date.unwrap_or(today)), on(today));
            // Usually the same version: its chain is read once.
            let now = now.filter(|n| then.is_none_or(|t| t.id != n.id));
            then.into_iter().chain(now).collect()
        })
        .collect();
    let all: Vec<&crate::areas::Area> = starts.iter().flatten().copied().collect();
    let mut chains = crate::areas::ancestors_of_all(conn, &all)?.into_iter();
    Ok(starts
        .iter()
        .map(|areas| {
            let mut codes = BTreeSet::new();
            for area in areas {
                codes.insert(area.code.clone());
                codes.extend(
                    chains
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|a| a.code),
                );
            }
            codes
        })
        .collect())
}

/// Adds the area index rows of submissions that have none yet: (submission id, area codes).
pub fn add_area_index(
    conn: &mut Conn<'_>,
    submissions: &[(i64, &BTreeSet<String>)],
) -> Result<(), AppError> {
    use crate::db::schema::submission_areas;
    let rows: Vec<_> = submissions
        .iter()
        .flat_map(|(id, codes)| {
            codes.iter().map(move |code| {
                (
                    submission_areas::submission_id.eq(*id),
                    submission_areas::area_code.eq(code),
                )
            })
        })
        .collect();
    if !rows.is_empty() {
        insert_rows!(conn, submission_areas::table, rows.as_slice(), (q, c) => q.execute(c))?;
    }
    Ok(())
}

/// Rebuilds the area index of every submission (after the area registry changed).
pub fn reindex_all_areas(conn: &mut Conn<'_>) -> Result<usize, AppError> {
    let ids: Vec<i64> = on_conn!(conn, c => submissions::table.select(submissions::id).load(c))?;
    for id in &ids {
        index_areas(conn, *id)?;
    }
    Ok(ids.len())
}

/// 404 unless the scope may see the submission (by row id). Not 403: a user outside the
/// area must not learn that the submission exists.
pub fn ensure_visible(
    conn: &mut Conn<'_>,
    scope: &Scope,
    submission_id: i64,
) -> Result<(), AppError> {
    let visibility = scope.visibility();
    let found: i64 = on_conn!(conn, c => {
        let q = submissions::table
            .filter(submissions::id.eq(submission_id))
            .into_boxed();
        visible_submissions!(q, &visibility).count().get_result(c)
    })?;
    if found == 1 {
        Ok(())
    } else {
        Err(not_visible())
    }
}

/// The answer for a submission that does not exist or that the caller may not see.
pub fn not_visible() -> AppError {
    AppError::not_found("unknown_submission", "no such submission")
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability::*;

    #[test]
    fn capability_table() {
        let table = [
            (Administer, [true, false, false, false, false]),
            (ReadForms, [true, true, true, false, true]),
            (ReadSubmissions, [true, true, true, true, true]),
            (Review, [true, true, true, false, false]),
            (Comment, [true, true, true, true, false]),
            (ReadAudit, [true, true, false, false, false]),
            (UseWebPage, [true, true, true, true, false]),
            (Collect, [true, true, true, true, false]),
        ];
        for (capability, allowed) in table {
            for (role, expected) in Role::ALL.into_iter().zip(allowed) {
                assert_eq!(
                    capability.allows(role),
                    expected,
                    "{capability:?} for {role:?}"
                );
            }
        }
    }

    #[test]
    fn visibility_by_role() {
        let scope = |role| Scope {
            user_id: 7,
            username: "u".into(),
            role,
            areas: vec!["04243".into()],
            key_scopes: None,
        };
        assert_eq!(scope(Role::Admin).visibility(), Visibility::All);
        assert_eq!(scope(Role::ProvinceOfficer).visibility(), Visibility::All);
        assert_eq!(scope(Role::ApiClient).visibility(), Visibility::All);
        assert_eq!(scope(Role::Collector).visibility(), Visibility::SentBy(7));
        assert_eq!(
            scope(Role::Supervisor).visibility(),
            Visibility::Areas(vec!["04243".into()])
        );
        assert!(scope(Role::Collector).require(Review).is_err());
    }

    #[test]
    fn a_key_may_do_what_both_its_role_and_its_scopes_allow() {
        let scope = |role, scopes: &[KeyScope]| Scope {
            user_id: 7,
            username: "u".into(),
            role,
            areas: Vec::new(),
            key_scopes: Some(scopes.to_vec()),
        };
        let reader = scope(Role::Admin, &[KeyScope::ReadSubmissions]);
        assert!(reader.may(ReadSubmissions));
        assert!(reader.may(ReadForms));
        assert!(!reader.may(Administer));
        assert!(!reader.may(ReadSensitive));
        // The administer scope does not lift a service account's role.
        assert!(!scope(Role::ApiClient, &[KeyScope::Administer]).may(Administer));
        assert!(scope(Role::Admin, &[KeyScope::Administer]).may(Administer));
        assert!(!scope(Role::Admin, &KeyScope::ALL).may(UseWebPage));
        assert!(!scope(Role::Admin, &[]).may(ReadSubmissions));
        assert_eq!(
            KeyScope::parse_list("export read_indicators export").expect("valid"),
            [KeyScope::ReadIndicators, KeyScope::Export]
        );
        assert!(KeyScope::parse_list("read_everything").is_err());
    }
}
