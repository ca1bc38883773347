//! Who may see and do what: the one place that decides which submissions a user may see,
//! review or comment on, and which kinds of route a role may use.
//!
//! Every handler (REST API and web page) turns its caller into a [`Scope`] and asks it: routes
//! with [`Scope::require`], queries over submissions with [`visible_submissions!`], single
//! submissions with [`ensure_visible`]. No other module decides visibility.

use diesel::prelude::*;

use crate::db::schema::submissions;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::users::{self, Role};

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
        })
    }

    pub fn may(&self, capability: Capability) -> bool {
        capability.allows(self.role)
    }

    /// 403 unless the role has the capability.
    pub fn require(&self, capability: Capability) -> Result<(), AppError> {
        if self.may(capability) {
            Ok(())
        } else {
            Err(AppError::forbidden(capability.refusal()))
        }
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
    let mut codes = std::collections::BTreeSet::new();
    if let Some((Some(hamlet), activity_date)) = current {
        let today = crate::areas::today();
        for date in [activity_date.unwrap_or(today), today] {
            if let Some(area) = crate::areas::find_on(conn, &hamlet, date)? {
                for a in crate::areas::ancestors(conn, &area)? {
                    codes.insert(a.code);
                }
                codes.insert(area.code);
            }
        }
    }
    on_conn!(conn, c => diesel::delete(
        submission_areas::table.filter(submission_areas::submission_id.eq(submission_id)),
    )
    .execute(c))?;
    for code in codes {
        on_conn!(conn, c => diesel::insert_into(submission_areas::table)
            .values((
                submission_areas::submission_id.eq(submission_id),
                submission_areas::area_code.eq(code),
            ))
            .execute(c))?;
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
}
