//! Pushing upstream: the targets the province configures (webhooks for submission events,
//! DHIS2 instances for indicator values), the outbox their deliveries wait in, and the worker
//! that sends them.
//!
//! A delivery is a row written in the same transaction as the change that causes it, so a
//! rolled-back change sends nothing and a committed one is never lost (see [`outbox`]).
//! Secrets (webhook signing secrets, DHIS2 credentials) are sealed with the data key and never
//! leave the server again, not even to an administrator.

pub mod dhis2;
pub mod outbox;
pub mod webhook;
pub mod worker;

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::crypto::DataKeys;
use crate::db::schema::{deliveries, push_targets};
use crate::db::Conn;
use crate::error::AppError;
use crate::indicators::contribution::Basis;
use crate::indicators::registry::MapKind;
use crate::on_conn;
use crate::users::now;

/// What seals a target's secret (authenticated with the ciphertext).
const SECRET_CONTEXT: &[u8] = b"push_target_secret";
/// Shortest webhook signing secret accepted.
const MIN_SECRET_CHARS: usize = 16;
/// Shortest DHIS2 schedule: pushing more often only loads the province's DHIS2.
const MIN_SCHEDULE_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Webhook,
    Dhis2,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Dhis2 => "dhis2",
        }
    }

    fn parse(s: &str) -> Result<Kind, AppError> {
        match s {
            "webhook" => Ok(Kind::Webhook),
            "dhis2" => Ok(Kind::Dhis2),
            _ => Err(AppError::bad_request(
                "bad_kind",
                format!("'{s}' is not a kind of push target: use webhook or dhis2"),
            )),
        }
    }
}

/// The DHIS2 period type a target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodType {
    Yearly,
    Quarterly,
    Monthly,
}

impl PeriodType {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodType::Yearly => "yearly",
            PeriodType::Quarterly => "quarterly",
            PeriodType::Monthly => "monthly",
        }
    }

    fn parse(s: &str) -> Result<PeriodType, AppError> {
        match s {
            "yearly" => Ok(PeriodType::Yearly),
            "quarterly" => Ok(PeriodType::Quarterly),
            "monthly" => Ok(PeriodType::Monthly),
            _ => Err(AppError::bad_request(
                "bad_period_type",
                format!("'{s}' is not a period type: use yearly, quarterly or monthly"),
            )),
        }
    }
}

/// One indicator measure (and optionally one disaggregation of it) and the DHIS2 ids its value
/// goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DataElementMapping)]
pub struct ElementMap {
    pub indicator: String,
    /// The measure's name; may be left out when the indicator has one measure.
    #[serde(default)]
    pub measure: Option<String>,
    /// Dimension values the value is narrowed to, e.g. `{"sex": "female"}`.
    #[serde(default)]
    pub disaggregation: BTreeMap<String, String>,
    pub data_element: String,
    #[serde(default)]
    pub category_option_combo: Option<String>,
    #[serde(default)]
    pub attribute_option_combo: Option<String>,
}

/// An area code and the DHIS2 organisation unit it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OrgUnitMapping)]
pub struct OrgUnitMap {
    pub area: String,
    pub org_unit: String,
}

/// What a DHIS2 target receives and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dhis2Settings {
    pub period_type: PeriodType,
    /// `provisional` or `confirmed`.
    pub basis: String,
    /// `current` or `as-recorded`.
    pub map: String,
    /// Seconds between scheduled pushes; none: only when a period closes.
    pub schedule_secs: Option<u64>,
    /// How many periods (the current one and those before it) a scheduled push sends.
    pub lookback: u32,
    pub data_elements: Vec<ElementMap>,
    pub org_units: Vec<OrgUnitMap>,
}

impl Dhis2Settings {
    pub fn basis(&self) -> Basis {
        Basis::parse(&self.basis).unwrap_or(Basis::Provisional)
    }

    pub fn map_kind(&self) -> MapKind {
        MapKind::parse(&self.map).unwrap_or(MapKind::Current)
    }
}

/// A target's settings as stored (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The submission events a webhook receives.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub dhis2: Option<Dhis2Settings>,
}

/// DHIS2 credentials, sealed as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// A personal access token, sent as `Authorization: ApiToken …`.
    Token {
        token: String,
    },
}

/// A target as the API receives it: create (every field) or replace (secrets may be left out
/// to keep the stored ones).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PushTargetInput)]
pub struct TargetInput {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub enabled: Option<bool>,
    /// Webhook: the signing secret; generated (and shown once) when left out on create.
    pub secret: Option<String>,
    pub events: Option<Vec<String>>,
    /// DHIS2: Basic credentials…
    pub username: Option<String>,
    pub password: Option<String>,
    /// … or a personal access token.
    pub token: Option<String>,
    pub period_type: Option<String>,
    pub basis: Option<String>,
    pub map: Option<String>,
    pub schedule_secs: Option<u64>,
    pub lookback: Option<u32>,
    pub data_elements: Option<Vec<ElementMap>>,
    pub org_units: Option<Vec<OrgUnitMap>>,
}

/// A checked target, ready to store.
#[derive(Debug, Clone)]
pub struct Checked {
    pub name: String,
    pub kind: Kind,
    pub url: String,
    pub enabled: bool,
    pub settings: Settings,
    /// The secret to seal, or `None` to keep the stored one.
    pub secret: Option<Vec<u8>>,
    /// A secret the server generated, to show once.
    pub generated_secret: Option<String>,
}

fn bad(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::bad_request(code, message)
}

fn check_url(url: &str) -> Result<String, AppError> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| bad("bad_url", format!("'{url}' is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("bad_url", "the URL must be http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("bad_url", "the URL has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Credentials in a URL end up in logs and listings; they have fields of their own.
        return Err(bad(
            "bad_url",
            "put no credentials in the URL: give username and password (or token) instead",
        ));
    }
    Ok(parsed.to_string().trim_end_matches('/').to_string())
}

fn check_events(events: &[String]) -> Result<Vec<String>, AppError> {
    if events.is_empty() {
        return Err(bad(
            "bad_events",
            format!(
                "say which events the webhook receives: {}",
                webhook::EVENTS.join(", ")
            ),
        ));
    }
    let mut out = Vec::new();
    for e in events {
        if !webhook::EVENTS.contains(&e.as_str()) {
            return Err(bad(
                "bad_events",
                format!("'{e}' is not an event: use {}", webhook::EVENTS.join(", ")),
            ));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

fn nonempty(label: &str, s: &str) -> Result<(), AppError> {
    if s.trim().is_empty() {
        return Err(bad("bad_mapping", format!("{label} is empty")));
    }
    Ok(())
}

/// Checks the shape of a DHIS2 mapping; [`dhis2::check_mapping`] checks it against the
/// indicator definitions and areas.
fn check_mapping(elements: &[ElementMap], units: &[OrgUnitMap]) -> Result<(), AppError> {
    if elements.is_empty() || units.is_empty() {
        return Err(bad(
            "bad_mapping",
            "a DHIS2 target needs data_elements (indicator → data element) and org_units (area → organisation unit)",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, e) in elements.iter().enumerate() {
        let label = format!("data_elements item {}", i + 1);
        nonempty(&format!("{label}: indicator"), &e.indicator)?;
        nonempty(&format!("{label}: data_element"), &e.data_element)?;
        if !seen.insert((
            e.data_element.clone(),
            e.category_option_combo.clone(),
            e.attribute_option_combo.clone(),
        )) {
            return Err(bad(
                "bad_mapping",
                format!("{label}: the data element {} and option combos are mapped twice; DHIS2 would keep only one value", e.data_element),
            ));
        }
    }
    let mut areas = std::collections::HashSet::new();
    for (i, u) in units.iter().enumerate() {
        let label = format!("org_units item {}", i + 1);
        nonempty(&format!("{label}: area"), &u.area)?;
        nonempty(&format!("{label}: org_unit"), &u.org_unit)?;
        if !areas.insert(u.area.clone()) {
            return Err(bad(
                "bad_mapping",
                format!("{label}: the area {} is mapped twice", u.area),
            ));
        }
    }
    Ok(())
}

/// Checks a target. `existing` is the stored target when replacing one (its kind cannot
/// change, and its secrets are kept unless new ones are given).
pub fn check(input: TargetInput, existing: Option<&Target>) -> Result<Checked, AppError> {
    let name = input
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("bad_name", "give the target a name"))?;
    if name.chars().count() > 100 {
        return Err(bad("bad_name", "a name has at most 100 characters"));
    }
    let kind = Kind::parse(
        input
            .kind
            .as_deref()
            .ok_or_else(|| bad("bad_kind", "say the kind: webhook or dhis2"))?,
    )?;
    if let Some(t) = existing {
        if t.kind != kind {
            return Err(bad(
                "bad_kind",
                "a target's kind cannot change; create a new target",
            ));
        }
    }
    let url = check_url(
        input
            .url
            .as_deref()
            .ok_or_else(|| bad("bad_url", "give the URL to push to"))?,
    )?;
    let enabled = input.enabled.unwrap_or(true);
    match kind {
        Kind::Webhook => {
            let dhis2_only = input.username.is_some()
                || input.password.is_some()
                || input.token.is_some()
                || input.data_elements.is_some()
                || input.org_units.is_some()
                || input.period_type.is_some()
                || input.schedule_secs.is_some();
            if dhis2_only {
                return Err(bad(
                    "bad_push_target",
                    "credentials, mappings, period types and schedules are for dhis2 targets",
                ));
            }
            let events = check_events(&input.events.unwrap_or_default())?;
            let (secret, generated) = match input.secret {
                Some(s) if s.chars().count() < MIN_SECRET_CHARS => {
                    return Err(bad(
                        "bad_secret",
                        format!("a signing secret has at least {MIN_SECRET_CHARS} characters"),
                    ))
                }
                Some(s) => (Some(s.into_bytes()), None),
                None if existing.is_some() => (None, None),
                None => {
                    let s = hex::encode(rand::random::<[u8; 32]>());
                    (Some(s.clone().into_bytes()), Some(s))
                }
            };
            Ok(Checked {
                name,
                kind,
                url,
                enabled,
                settings: Settings {
                    events,
                    dhis2: None,
                },
                secret,
                generated_secret: generated,
            })
        }
        Kind::Dhis2 => {
            if input.events.is_some() || input.secret.is_some() {
                return Err(bad(
                    "bad_push_target",
                    "events and signing secrets are for webhook targets",
                ));
            }
            let credentials = match (input.username, input.password, input.token) {
                (Some(u), Some(p), None) if !u.is_empty() && !p.is_empty() => {
                    Some(Credentials::Basic {
                        username: u,
                        password: p,
                    })
                }
                (None, None, Some(t)) if !t.is_empty() => Some(Credentials::Token { token: t }),
                (None, None, None) if existing.is_some() => None,
                _ => {
                    return Err(bad(
                        "bad_credentials",
                        "give DHIS2 credentials: username and password, or a personal access token (token)",
                    ))
                }
            };
            let secret = credentials
                .map(|c| serde_json::to_vec(&c).map_err(|e| AppError::internal(e.to_string())))
                .transpose()?;
            let period_type = PeriodType::parse(input.period_type.as_deref().unwrap_or("yearly"))?;
            let basis = input.basis.unwrap_or_else(|| "confirmed".into());
            if Basis::parse(&basis).is_none() {
                return Err(bad("bad_basis", "basis is `provisional` or `confirmed`"));
            }
            let map = input.map.unwrap_or_else(|| "current".into());
            if MapKind::parse(&map).is_none() {
                return Err(bad("bad_map", "map is `current` or `as-recorded`"));
            }
            if input.schedule_secs.is_some_and(|s| s < MIN_SCHEDULE_SECS) {
                return Err(bad(
                    "bad_schedule",
                    format!("schedule_secs is the number of seconds between pushes, at least {MIN_SCHEDULE_SECS}"),
                ));
            }
            let lookback = input.lookback.unwrap_or(1);
            if !(1..=60).contains(&lookback) {
                return Err(bad(
                    "bad_lookback",
                    "lookback is how many periods a scheduled push sends: 1 to 60",
                ));
            }
            let old = existing.and_then(|t| t.settings.dhis2.clone());
            let data_elements = input
                .data_elements
                .or_else(|| old.as_ref().map(|o| o.data_elements.clone()))
                .unwrap_or_default();
            let org_units = input
                .org_units
                .or_else(|| old.as_ref().map(|o| o.org_units.clone()))
                .unwrap_or_default();
            check_mapping(&data_elements, &org_units)?;
            Ok(Checked {
                name,
                kind,
                url,
                enabled,
                settings: Settings {
                    events: Vec::new(),
                    dhis2: Some(Dhis2Settings {
                        period_type,
                        basis,
                        map,
                        schedule_secs: input.schedule_secs,
                        lookback,
                        data_elements,
                        org_units,
                    }),
                },
                secret,
                generated_secret: None,
            })
        }
    }
}

/// A stored target, its secret still sealed.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: i64,
    pub name: String,
    pub kind: Kind,
    pub url: String,
    pub sealed_secret: Vec<u8>,
    pub settings: Settings,
    pub enabled: bool,
    pub next_push_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

type TargetRow = (
    i64,
    String,
    String,
    String,
    Vec<u8>,
    String,
    bool,
    Option<NaiveDateTime>,
    NaiveDateTime,
    NaiveDateTime,
);

fn from_row(r: TargetRow) -> Result<Target, AppError> {
    let (id, name, kind, url, sealed_secret, settings, enabled, next_push_at, created, updated) = r;
    Ok(Target {
        id,
        name,
        kind: Kind::parse(&kind).map_err(|_| AppError::internal("stored push target kind"))?,
        url,
        sealed_secret,
        settings: serde_json::from_str(&settings)
            .map_err(|e| AppError::internal(format!("stored push target settings: {e}")))?,
        enabled,
        next_push_at,
        created_at: created,
        updated_at: updated,
    })
}

macro_rules! target_columns {
    () => {
        (
            push_targets::id,
            push_targets::name,
            push_targets::kind,
            push_targets::url,
            push_targets::secret,
            push_targets::settings,
            push_targets::enabled,
            push_targets::next_push_at,
            push_targets::created_at,
            push_targets::updated_at,
        )
    };
}

pub fn all(conn: &mut Conn<'_>) -> Result<Vec<Target>, AppError> {
    let rows: Vec<TargetRow> = on_conn!(conn, c => push_targets::table
        .select(target_columns!())
        .order(push_targets::id)
        .load(c))?;
    rows.into_iter().map(from_row).collect()
}

/// Enabled targets of one kind.
pub fn enabled(conn: &mut Conn<'_>, kind: Kind) -> Result<Vec<Target>, AppError> {
    let rows: Vec<TargetRow> = on_conn!(conn, c => push_targets::table
        .filter(push_targets::kind.eq(kind.as_str()))
        .filter(push_targets::enabled.eq(true))
        .select(target_columns!())
        .order(push_targets::id)
        .load(c))?;
    rows.into_iter().map(from_row).collect()
}

pub fn get(conn: &mut Conn<'_>, id: i64) -> Result<Target, AppError> {
    let row: Option<TargetRow> = on_conn!(conn, c => push_targets::table
        .find(id)
        .select(target_columns!())
        .first(c)
        .optional())?;
    row.map(from_row).transpose()?.ok_or_else(|| {
        AppError::not_found("no_push_target", format!("there is no push target {id}"))
    })
}

fn encode_settings(s: &Settings) -> Result<String, AppError> {
    serde_json::to_string(s).map_err(|e| AppError::internal(e.to_string()))
}

fn name_taken(conn: &mut Conn<'_>, name: &str, except: Option<i64>) -> Result<(), AppError> {
    let other: Option<i64> = on_conn!(conn, c => push_targets::table
        .filter(push_targets::name.eq(name))
        .select(push_targets::id)
        .first(c)
        .optional())?;
    match other {
        Some(id) if Some(id) != except => Err(AppError::conflict(
            "name_taken",
            format!("a push target is already called '{name}'"),
        )),
        _ => Ok(()),
    }
}

/// Stores a new target; runs in the writer.
pub fn create(conn: &mut Conn<'_>, keys: &DataKeys, t: &Checked) -> Result<Target, AppError> {
    name_taken(conn, &t.name, None)?;
    let secret = t
        .secret
        .as_ref()
        .ok_or_else(|| AppError::internal("a new target has no secret"))?;
    let sealed = keys.seal(secret, SECRET_CONTEXT)?;
    let at = now();
    let id: i64 = on_conn!(conn, c => diesel::insert_into(push_targets::table)
        .values((
            push_targets::name.eq(&t.name),
            push_targets::kind.eq(t.kind.as_str()),
            push_targets::url.eq(&t.url),
            push_targets::secret.eq(&sealed),
            push_targets::settings.eq(encode_settings(&t.settings)?),
            push_targets::enabled.eq(t.enabled),
            push_targets::next_push_at.eq(None::<NaiveDateTime>),
            push_targets::created_at.eq(at),
            push_targets::updated_at.eq(at),
        ))
        .returning(push_targets::id)
        .get_result(c))?;
    get(conn, id)
}

/// Replaces a target's configuration; runs in the writer.
pub fn update(
    conn: &mut Conn<'_>,
    keys: &DataKeys,
    id: i64,
    t: &Checked,
) -> Result<Target, AppError> {
    get(conn, id)?;
    name_taken(conn, &t.name, Some(id))?;
    on_conn!(conn, c => diesel::update(push_targets::table.find(id))
        .set((
            push_targets::name.eq(&t.name),
            push_targets::url.eq(&t.url),
            push_targets::settings.eq(encode_settings(&t.settings)?),
            push_targets::enabled.eq(t.enabled),
            // A changed schedule takes effect at once.
            push_targets::next_push_at.eq(None::<NaiveDateTime>),
            push_targets::updated_at.eq(now()),
        ))
        .execute(c))?;
    if let Some(secret) = &t.secret {
        let sealed = keys.seal(secret, SECRET_CONTEXT)?;
        on_conn!(conn, c => diesel::update(push_targets::table.find(id))
            .set(push_targets::secret.eq(&sealed))
            .execute(c))?;
    }
    get(conn, id)
}

/// Removes a target and its deliveries (sent or not); runs in the writer.
pub fn delete(conn: &mut Conn<'_>, id: i64) -> Result<Target, AppError> {
    let t = get(conn, id)?;
    on_conn!(conn, c => diesel::delete(deliveries::table.filter(deliveries::target_id.eq(id))).execute(c))?;
    on_conn!(conn, c => diesel::delete(push_targets::table.find(id)).execute(c))?;
    Ok(t)
}

/// Sets when the schedule next pushes a target.
pub fn set_next_push(conn: &mut Conn<'_>, id: i64, at: NaiveDateTime) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::update(push_targets::table.find(id))
        .set(push_targets::next_push_at.eq(Some(at)))
        .execute(c))?;
    Ok(())
}

impl Target {
    /// The webhook signing secret.
    pub fn signing_secret(&self, keys: &DataKeys) -> Result<Vec<u8>, AppError> {
        keys.open(&self.sealed_secret, SECRET_CONTEXT)
    }

    /// The DHIS2 credentials.
    pub fn credentials(&self, keys: &DataKeys) -> Result<Credentials, AppError> {
        let plain = keys.open(&self.sealed_secret, SECRET_CONTEXT)?;
        serde_json::from_slice(&plain)
            .map_err(|e| AppError::internal(format!("stored DHIS2 credentials: {e}")))
    }

    /// The target as the API shows it: never a secret, only what kind of secret is set.
    pub fn view(&self, keys: &DataKeys) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "url": self.url,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        });
        match (&self.settings.dhis2, self.kind) {
            (Some(d), Kind::Dhis2) => {
                let auth = match self.credentials(keys) {
                    Ok(Credentials::Basic { username, .. }) => {
                        serde_json::json!({ "type": "basic", "username": username })
                    }
                    Ok(Credentials::Token { .. }) => serde_json::json!({ "type": "token" }),
                    Err(_) => serde_json::json!({ "type": "unreadable" }),
                };
                v["auth"] = auth;
                v["period_type"] = serde_json::json!(d.period_type);
                v["basis"] = serde_json::json!(d.basis);
                v["map"] = serde_json::json!(d.map);
                v["schedule_secs"] = serde_json::json!(d.schedule_secs);
                v["lookback"] = serde_json::json!(d.lookback);
                v["next_push_at"] = serde_json::json!(self.next_push_at);
                v["data_elements"] = serde_json::json!(d.data_elements);
                v["org_units"] = serde_json::json!(d.org_units);
            }
            _ => {
                v["events"] = serde_json::json!(self.settings.events);
                v["secret_set"] = serde_json::json!(!self.sealed_secret.is_empty());
            }
        }
        v
    }
}

/// Seals every target's secret again with the current data key (part of `keys rotate`).
pub fn reseal_all(conn: &mut Conn<'_>, keys: &DataKeys) -> Result<usize, AppError> {
    let targets = all(conn)?;
    for t in &targets {
        let plain = keys.open(&t.sealed_secret, SECRET_CONTEXT)?;
        let sealed = keys.seal(&plain, SECRET_CONTEXT)?;
        on_conn!(conn, c => diesel::update(push_targets::table.find(t.id))
            .set(push_targets::secret.eq(&sealed))
            .execute(c))?;
    }
    Ok(targets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(secret: Option<&str>, events: &[&str]) -> TargetInput {
        TargetInput {
            name: Some("hook".into()),
            kind: Some("webhook".into()),
            url: Some("https://example.org/hook/".into()),
            secret: secret.map(str::to_string),
            events: Some(events.iter().map(|e| e.to_string()).collect()),
            ..Default::default()
        }
    }

    fn code(r: Result<Checked, AppError>) -> &'static str {
        match r {
            Err(AppError::Client { code, .. }) => code,
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn webhooks_need_known_events_and_a_long_secret() {
        let ok = check(webhook(None, &["submission.created"]), None).expect("valid");
        assert_eq!(ok.url, "https://example.org/hook");
        assert_eq!(ok.generated_secret.as_ref().map(String::len), Some(64));
        assert_eq!(code(check(webhook(None, &[]), None)), "bad_events");
        assert_eq!(
            code(check(webhook(None, &["submission.eaten"]), None)),
            "bad_events"
        );
        assert_eq!(
            code(check(webhook(Some("short"), &["submission.created"]), None)),
            "bad_secret"
        );
        let mut input = webhook(None, &["submission.created"]);
        input.url = Some("ftp://example.org".into());
        assert_eq!(code(check(input.clone(), None)), "bad_url");
        input.url = Some("https://user:pw@example.org".into());
        assert_eq!(code(check(input.clone(), None)), "bad_url");
        input.url = Some("https://example.org".into());
        input.token = Some("x".into());
        assert_eq!(code(check(input, None)), "bad_push_target");
    }

    #[test]
    fn dhis2_targets_need_credentials_and_a_mapping() {
        let input = TargetInput {
            name: Some("dhis2".into()),
            kind: Some("dhis2".into()),
            url: Some("https://dhis2.example.org".into()),
            username: Some("u".into()),
            password: Some("p".into()),
            data_elements: Some(vec![ElementMap {
                indicator: "P8-08".into(),
                measure: Some("dialogues".into()),
                disaggregation: BTreeMap::new(),
                data_element: "deA".into(),
                category_option_combo: None,
                attribute_option_combo: None,
            }]),
            org_units: Some(vec![OrgUnitMap {
                area: "14".into(),
                org_unit: "ouA".into(),
            }]),
            ..Default::default()
        };
        let ok = check(input.clone(), None).expect("valid");
        let d = ok.settings.dhis2.expect("dhis2");
        assert_eq!(
            (d.period_type, d.basis.as_str()),
            (PeriodType::Yearly, "confirmed")
        );
        let mut no_auth = input.clone();
        no_auth.password = None;
        assert_eq!(code(check(no_auth, None)), "bad_credentials");
        let mut no_units = input.clone();
        no_units.org_units = Some(Vec::new());
        assert_eq!(code(check(no_units, None)), "bad_mapping");
        let mut twice = input.clone();
        if let Some(e) = twice.data_elements.as_mut() {
            e.push(e[0].clone());
        }
        assert_eq!(code(check(twice, None)), "bad_mapping");
        let mut bad_type = input;
        bad_type.period_type = Some("weekly".into());
        assert_eq!(code(check(bad_type, None)), "bad_period_type");
    }
}
