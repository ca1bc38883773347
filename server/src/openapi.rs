//! The REST API described as an OpenAPI 3.1 document (`GET /api/v1/openapi.json`) and as a page
//! to read offline (`GET /api/v1/docs`), both built from [`OPERATIONS`].
//!
//! Adding a route: add its line to [`OPERATIONS`] (method, path as registered under `/api/v1`,
//! tag, summary, who may call it), with its query parameters, its request body (`takes`, or
//! `no_body` for a POST or PUT that reads none) and its success answer (`gives`). Body types
//! derive `utoipa::ToSchema`; the document lists them under `components/schemas`. The test
//! `every_registered_route_is_documented` lists the routes the application itself registers and
//! fails for any that has no line here; `every_operation_describes_its_bodies` fails for an
//! operation without its bodies.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required,
};
use utoipa::ToSchema;

use crate::api::{
    api_keys, areas as area_api, audit as audit_api, auth, exports as export_api, fieldwork,
    forms as form_api, indicators as indicator_api, push as push_api, submissions as sub_api,
    users as user_api,
};

/// The named schemas of the document, filled as operations refer to them.
type Schemas = BTreeMap<String, RefOr<Schema>>;

/// Describes a body: registers the schemas it needs and returns its own (usually a reference).
pub type Describe = fn(&mut Schemas) -> RefOr<Schema>;

/// One content type of a request or response body.
#[derive(Clone, Copy)]
pub struct Body {
    pub media: &'static str,
    pub schema: Describe,
}

/// What an operation reads from its request body.
#[derive(Clone, Copy)]
pub enum Input {
    /// Not said: only right for GET and DELETE (a test checks).
    Unset,
    /// A POST or PUT that reads no body.
    Nothing,
    Required(&'static [Body]),
    /// The body may be left empty.
    Optional(&'static [Body]),
}

/// The type of a query parameter.
#[derive(Clone, Copy)]
pub enum Kind {
    Text,
    Integer,
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339.
    Time,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

/// A query parameter; all are optional.
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
}

/// One documented operation.
pub struct Op {
    pub method: &'static str,
    /// Under `/api/v1`, with `{parameters}` as registered.
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Who may call it, beyond a valid token or key.
    pub who: &'static str,
    pub query: &'static [Param],
    pub input: Input,
    /// The success status.
    pub status: u16,
    /// The success body, one entry per content type it may come as (none for 204).
    pub output: &'static [Body],
}

const fn op(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    who: &'static str,
) -> Op {
    Op {
        method,
        path,
        tag,
        summary,
        who,
        query: &[],
        input: Input::Unset,
        status: 200,
        output: &[],
    }
}

impl Op {
    const fn query(mut self, query: &'static [Param]) -> Op {
        self.query = query;
        self
    }

    const fn takes(mut self, body: &'static [Body]) -> Op {
        self.input = Input::Required(body);
        self
    }

    const fn may_take(mut self, body: &'static [Body]) -> Op {
        self.input = Input::Optional(body);
        self
    }

    const fn no_body(mut self) -> Op {
        self.input = Input::Nothing;
        self
    }

    const fn gives(mut self, status: u16, output: &'static [Body]) -> Op {
        self.status = status;
        self.output = output;
        self
    }
}

const fn q(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        description,
    }
}

const JSON: &str = "application/json";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const XLS: &str = "application/vnd.ms-excel";
const ODS: &str = "application/vnd.oasis.opendocument.spreadsheet";
const XML: &str = "text/xml";
const CSV: &str = "text/csv";

/// A JSON body of type `T`.
const fn json<T: ToSchema>() -> Body {
    Body {
        media: JSON,
        schema: named::<T>,
    }
}

/// A JSON list of `T`.
const fn json_list<T: ToSchema>() -> Body {
    Body {
        media: JSON,
        schema: list::<T>,
    }
}

/// A JSON body described by hand.
const fn json_by(schema: Describe) -> Body {
    Body {
        media: JSON,
        schema,
    }
}

/// Bytes of a file.
const fn file(media: &'static str) -> Body {
    Body {
        media,
        schema: binary,
    }
}

/// Text such as CSV, XML or HTML.
const fn text(media: &'static str) -> Body {
    Body {
        media,
        schema: string,
    }
}

fn named<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    for (name, schema) in nested {
        schemas.entry(name).or_insert(schema);
    }
    let name = T::name();
    schemas.entry(name.to_string()).or_insert_with(T::schema);
    RefOr::Ref(Ref::from_schema_name(name))
}

fn list<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    array(named::<T>(schemas))
}

fn array(items: RefOr<Schema>) -> RefOr<Schema> {
    ArrayBuilder::new().items(items).build().into()
}

fn binary(_: &mut Schemas) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .build()
        .into()
}

fn string(_: &mut Schemas) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .build()
        .into()
}

fn any_object(_: &mut Schemas) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .build()
        .into()
}

fn one_of(items: Vec<RefOr<Schema>>) -> RefOr<Schema> {
    let mut b = OneOfBuilder::new();
    for item in items {
        b = b.item(item);
    }
    RefOr::T(Schema::OneOf(b.build()))
}

fn prop(t: impl Into<SchemaType>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(t)
        .description(Some(description))
        .build()
        .into()
}

fn nullable(t: Type) -> SchemaType {
    SchemaType::from_iter([t, Type::Null])
}

/// Rows to import as JSON: a list, or an object holding the list under `key`.
fn rows<T: ToSchema>(schemas: &mut Schemas, key: &str) -> RefOr<Schema> {
    let list = list::<T>(schemas);
    let wrapped = ObjectBuilder::new()
        .property(key, list.clone())
        .required(key)
        .build();
    one_of(vec![list, wrapped.into()])
}

fn target_rows(s: &mut Schemas) -> RefOr<Schema> {
    rows::<crate::indicators::targets::TargetInput>(s, "targets")
}

fn baseline_rows(s: &mut Schemas) -> RefOr<Schema> {
    rows::<crate::indicators::targets::BaselineInput>(s, "baselines")
}

fn element_rows(s: &mut Schemas) -> RefOr<Schema> {
    rows::<crate::push::ElementMap>(s, "data_elements")
}

fn org_unit_rows(s: &mut Schemas) -> RefOr<Schema> {
    rows::<crate::push::OrgUnitMap>(s, "org_units")
}

/// A form upload's answer: the version of an XForm, or that and the workbook's conversion.
fn uploaded(s: &mut Schemas) -> RefOr<Schema> {
    let xform = named::<crate::forms::FormVersionInfo>(s);
    let workbook = named::<form_api::GeneratedUpload>(s);
    one_of(vec![xform, workbook])
}

/// `GET /submissions` answers a page of submissions, or with `updated_since` the change feed.
fn submissions_or_feed(s: &mut Schemas) -> RefOr<Schema> {
    let page = named::<sub_api::SubmissionList>(s);
    let feed = named::<sub_api::ChangeFeed>(s);
    one_of(vec![page, feed])
}

/// A push target as the API shows it (built as JSON by `push::Target::view`): the common
/// fields, then a webhook's or a DHIS2 target's own. Secrets are never shown, except a
/// generated webhook secret once, in the answer that created it.
fn push_target(s: &mut Schemas) -> RefOr<Schema> {
    const NAME: &str = "PushTarget";
    if !s.contains_key(NAME) {
        let elements = list::<crate::push::ElementMap>(s);
        let org_units = list::<crate::push::OrgUnitMap>(s);
        let auth = ObjectBuilder::new()
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["basic", "token", "unreadable"])),
            )
            .required("type")
            .property(
                "username",
                prop(Type::String, "Basic credentials' user name"),
            )
            .description(Some(
                "DHIS2: how the server signs in (never the password or token)",
            ))
            .build();
        let events = ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(crate::push::webhook::EVENTS)),
            )
            .description(Some("Webhook: the events it receives"))
            .build();
        let mut target = ObjectBuilder::new()
            .property("id", prop(Type::Integer, ""))
            .property("name", prop(Type::String, ""))
            .property(
                "kind",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["webhook", "dhis2"])),
            )
            .property("url", prop(Type::String, ""))
            .property("enabled", prop(Type::Boolean, ""))
            .property("created_at", prop(Type::String, "UTC"))
            .property("updated_at", prop(Type::String, "UTC"))
            .property("events", events)
            .property("secret_set", prop(Type::Boolean, "Webhook: whether a signing secret is stored"))
            .property("secret", prop(Type::String, "Webhook: the generated signing secret, in the answer that created the target only"))
            .property("auth", auth)
            .property(
                "period_type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["yearly", "quarterly", "monthly"]))
                    .description(Some("DHIS2")),
            )
            .property("basis", prop(Type::String, "DHIS2: `provisional` or `confirmed`"))
            .property("map", prop(Type::String, "DHIS2: `current` or `as-recorded`"))
            .property("schedule_secs", prop(nullable(Type::Integer), "DHIS2: seconds between scheduled pushes; `null`: only when a period closes"))
            .property("lookback", prop(Type::Integer, "DHIS2: how many periods a scheduled push sends"))
            .property("next_push_at", prop(nullable(Type::String), "DHIS2: when the next scheduled push is due (UTC)"))
            .property("data_elements", elements)
            .property("org_units", org_units);
        for required in [
            "id",
            "name",
            "kind",
            "url",
            "enabled",
            "created_at",
            "updated_at",
        ] {
            target = target.required(required);
        }
        s.insert(NAME.to_string(), target.build().into());
    }
    RefOr::Ref(Ref::from_schema_name(NAME))
}

fn push_targets(s: &mut Schemas) -> RefOr<Schema> {
    let target = push_target(s);
    ObjectBuilder::new()
        .property("push_targets", array(target))
        .required("push_targets")
        .build()
        .into()
}

const ADMIN: &str = "administrators (scope `administer` with a key)";
const ANY: &str = "any signed-in user";
const READERS: &str = "roles that read submissions (scope `read_submissions`); rows limited to what the caller may see";
const REVIEWERS: &str = "admin, province officer, supervisor (scope `administer`)";
const INDICATOR_READERS: &str = "admin, province officer, api_client (scope `read_indicators`)";
const PROVINCE: &str = "admin, province officer (scope `administer`)";
const FORM_READERS: &str = "admin, province officer, supervisor, api_client";
const EXPORTERS: &str = "admin, province officer, supervisor (their areas), api_client (scope `export`; sensitive values also need `read_sensitive` and a purpose, logged)";

const REVIEW_STATES: &[&str] = &["received", "approved", "rejected", "has_issues", "edited"];
const BASIS: Param = q(
    "basis",
    Kind::OneOf(&["provisional", "confirmed"]),
    "`provisional` (default): every submission not rejected; `confirmed`: approved ones only",
);
const MAP: Param = q(
    "map",
    Kind::OneOf(&["current", "as-recorded"]),
    "`current` (default): today's communes; `as-recorded`: the communes and districts of the activity date",
);
const LIMIT: Param = q(
    "limit",
    Kind::Integer,
    "Rows per page, 1 to 1000 (default 100)",
);
const PURPOSE: Param = q(
    "purpose",
    Kind::Text,
    "Why protected data is read (or the `X-Purpose` header); written to the access log",
);
const VERSION: Param = q(
    "version",
    Kind::Text,
    "instanceID of an earlier version; the current version by default",
);
const AREA_QUERY: &[Param] = &[q("on", Kind::Date, "The day (default today)")];

const SUBMISSION_QUERY: &[Param] = &[
    q("form", Kind::Text, "Form id"),
    q("version", Kind::Text, "Form version"),
    q("collector", Kind::Text, "The collector's user name"),
    q("state", Kind::OneOf(REVIEW_STATES), "Current review state"),
    q("area", Kind::Text, "An area code the submissions lie in (hamlet, commune, district or province)"),
    q("flag", Kind::Text, "A flag the current version carries (`outside_district`, `low_accuracy`, …)"),
    q("since", Kind::Time, "Submissions first received at or after this time"),
    q("cursor", Kind::Text, "`next_cursor` of the previous page"),
    LIMIT,
    q("updated_since", Kind::Text, "The change feed after this cursor (its `next_cursor`; empty: from the beginning); takes only `limit`"),
];

const VALUES_QUERY: &[Param] = &[
    q(
        "period",
        Kind::Text,
        "A year (2025), a quarter (2025-Q3) or a month (2025-07); this year by default",
    ),
    q("area", Kind::Text, "An area code; the province by default"),
    q(
        "level",
        Kind::OneOf(&["province", "district", "commune", "hamlet"]),
        "The level of the rows: the area's children by default",
    ),
    q(
        "by",
        Kind::Text,
        "Dimensions to break the values down by, comma-separated (e.g. `sex,month`)",
    ),
    BASIS,
    MAP,
    q(
        "indicator",
        Kind::Text,
        "Indicator codes, comma-separated; every indicator by default",
    ),
    q(
        "snapshot",
        Kind::Text,
        "A closed period: the figures as they were when it was closed",
    ),
];

const BEHIND_QUERY: &[Param] = &[
    q(
        "measure",
        Kind::Text,
        "The measure's name; the indicator's first by default",
    ),
    BASIS,
    MAP,
    LIMIT,
    q(
        "cursor",
        Kind::Integer,
        "`next_cursor` of the previous page",
    ),
];

const REPORT_QUERY: &[Param] = &[
    q("year", Kind::Integer, "2000 to 2100; this year by default"),
    BASIS,
    MAP,
];

const YEAR_QUERY: &[Param] = &[q("year", Kind::Integer, "Only this year")];

const EXPORT_QUERY: &[Param] = &[
    q(
        "format",
        Kind::OneOf(&["csv", "xlsx", "geojson"]),
        "`csv` (default, a zip of CSV files), `xlsx` or `geojson`",
    ),
    q(
        "lang",
        Kind::OneOf(&["vi", "en"]),
        "Headers from the form's labels in this language; field paths by default",
    ),
    q("area", Kind::Text, "An area code the submissions lie in"),
    q("from", Kind::Date, "Activity dates from (inclusive)"),
    q("to", Kind::Date, "Activity dates to (inclusive)"),
    q("state", Kind::OneOf(REVIEW_STATES), "Current review state"),
    q(
        "attachments",
        Kind::Boolean,
        "CSV only: put the attachments into the zip",
    ),
    q(
        "field",
        Kind::Text,
        "GeoJSON only: the geopoint field to map (the first geopoint by default)",
    ),
    PURPOSE,
];

const EXPORT_FILES: &[Body] = &[
    file("application/zip"),
    file(XLSX),
    file("application/geo+json"),
];

const WORKBOOKS: &[Body] = &[file(XLSX), file(XLS), file(ODS)];

pub const OPERATIONS: &[Op] = &[
    op("POST", "/auth/token", "auth", "A user name and password, or an API key, for a short-lived access token", "anyone (rate-limited)")
        .takes(&[json::<auth::Login>()]).gives(200, &[json::<auth::TokenResponse>()]),
    op("POST", "/auth/logout", "auth", "Revoke every access token of the caller, on every instance, at once", ANY)
        .no_body().gives(200, &[json::<auth::Revoked>()]),
    op("GET", "/auth/signing-keys", "auth", "The token signing keys' ids and dates (never their secrets)", ADMIN)
        .gives(200, &[json::<auth::SigningKeys>()]),
    op("POST", "/auth/signing-keys/rotate", "auth", "A new key signs new tokens; tokens signed with earlier keys stay valid until they expire", ADMIN)
        .no_body().gives(200, &[json::<auth::Rotated>()]),
    op("GET", "/api-keys", "auth", "API keys of service accounts (never the keys themselves)", ADMIN)
        .gives(200, &[json::<api_keys::ApiKeys>()]),
    op("POST", "/api-keys", "auth", "Create an API key {username, name, scopes, expires_at}; the key is shown once", ADMIN)
        .takes(&[json::<api_keys::CreateBody>()]).gives(201, &[json::<api_keys::CreatedKey>()]),
    op("DELETE", "/api-keys/{id}", "auth", "Revoke an API key and every token exchanged for it, at once", ADMIN)
        .gives(200, &[json::<api_keys::RevokedKey>()]),
    op("GET", "/forms", "forms", "Forms and their versions", FORM_READERS)
        .gives(200, &[json_list::<form_api::FormSummary>()]),
    op("POST", "/forms", "forms", "Upload an XForm or XLSForm workbook (?publish=true to open it); 201 for a new version, 200 for one already stored. A workbook's file name comes from Content-Disposition; the X-XlsForm-FormId-Fallback header stands in for a missing form id", ADMIN)
        .query(&[q("publish", Kind::Boolean, "Open the version for phones at once")])
        .takes(&[text(XML), text("application/xml"), file(XLSX), file(XLS), file(ODS)])
        .gives(201, &[json_by(uploaded)]),
    op("POST", "/forms/convert", "forms", "Convert an XLSForm workbook without storing anything", ADMIN)
        .takes(WORKBOOKS).gives(200, &[json::<form_api::Preview>()]),
    op("GET", "/forms/{form_id}/versions", "forms", "The versions of a form (draft, open, closed)", FORM_READERS)
        .gives(200, &[json_list::<crate::forms::FormVersionInfo>()]),
    op("POST", "/forms/{form_id}/versions/{version}/publish", "forms", "Open a version for phones", ADMIN)
        .no_body().gives(200, &[json::<crate::forms::FormVersionInfo>()]),
    op("POST", "/forms/{form_id}/versions/{version}/close", "forms", "Close a version", ADMIN)
        .no_body().gives(200, &[json::<crate::forms::FormVersionInfo>()]),
    op("PUT", "/forms/{form_id}/versions/{version}/media/{filename}", "forms", "Attach a media file to a version (its Content-Type is kept)", ADMIN)
        .takes(&[file("application/octet-stream")]).gives(201, &[json::<crate::forms::MediaFile>()]),
    op("GET", "/forms/{form_id}/versions/{version}/media", "forms", "The media files of a version", FORM_READERS)
        .gives(200, &[json_list::<crate::forms::MediaFile>()]),
    op("GET", "/forms/{form_id}/versions/{version}/source", "forms", "The XLSForm workbook a version was made from", FORM_READERS)
        .gives(200, WORKBOOKS),
    op("GET", "/forms/{form_id}/versions/{version}/form.xml", "forms", "The stored XForm, the bytes phones get", FORM_READERS)
        .gives(200, &[text(XML)]),
    op("GET", "/forms/{form_id}/protection", "forms", "How the form's submissions are protected", ADMIN)
        .gives(200, &[json::<crate::protection::Protection>()]),
    op("PUT", "/forms/{form_id}/protection", "forms", "Seal submissions, reduce geotags, record consent", ADMIN)
        .takes(&[json::<crate::protection::Protection>()]).gives(200, &[json::<crate::protection::Protection>()]),
    op("GET", "/users", "users", "Users and their roles", ADMIN)
        .gives(200, &[json_list::<crate::users::UserView>()]),
    op("POST", "/users", "users", "Create a user {username, password, role}", ADMIN)
        .takes(&[json::<user_api::CreateUser>()]).gives(201, &[json::<crate::users::UserView>()]),
    op("POST", "/users/{username}/app-key", "users", "Issue a collector's app key", ADMIN)
        .no_body().gives(201, &[json::<user_api::AppKey>()]),
    op("DELETE", "/users/{username}/app-key", "users", "Revoke a collector's app key", ADMIN)
        .gives(200, &[json::<user_api::RevokedAppKeys>()]),
    op("POST", "/users/{username}/revoke-tokens", "users", "Revoke every access token of a user", ADMIN)
        .no_body().gives(200, &[json::<auth::Revoked>()]),
    op("GET", "/users/{username}/forms", "users", "The forms a collector is restricted to", ADMIN)
        .gives(200, &[json::<user_api::AssignedForms>()]),
    op("PUT", "/users/{username}/forms", "users", "Restrict a collector to these forms", ADMIN)
        .takes(&[json::<user_api::Assignment>()]).gives(200, &[json::<user_api::AssignedForms>()]),
    op("GET", "/users/{username}/areas", "users", "The areas a supervisor covers", ADMIN)
        .gives(200, &[json::<user_api::Areas>()]),
    op("PUT", "/users/{username}/areas", "users", "Set the areas a supervisor covers", ADMIN)
        .takes(&[json::<user_api::Areas>()]).gives(200, &[json::<user_api::Areas>()]),
    op("GET", "/users/{username}/hamlets", "users", "The hamlets of a collector", ADMIN)
        .gives(200, &[json::<fieldwork::Hamlets>()]),
    op("PUT", "/users/{username}/hamlets", "users", "Set the hamlets of a collector", ADMIN)
        .takes(&[json::<fieldwork::Assignment>()]).gives(200, &[json::<fieldwork::Hamlets>()]),
    op("GET", "/users/{username}/collect-settings.json", "users", "The settings that configure ODK Collect for a collector", ADMIN)
        .gives(200, &[json_by(any_object)]),
    op("GET", "/users/{username}/collect-settings.png", "users", "The QR code that configures ODK Collect for a collector", ADMIN)
        .gives(200, &[file("image/png")]),
    op("GET", "/areas", "areas", "The area tree valid on a day", ANY)
        .query(AREA_QUERY).gives(200, &[json::<area_api::AreaTree>()]),
    op("GET", "/areas/{code}", "areas", "One area on a day, with parents, children, successions and optionally its boundary", ANY)
        .query(&[
            q("on", Kind::Date, "The day; the latest version by default"),
            q("geometry", Kind::Boolean, "Include the boundary (GeoJSON geometry)"),
        ])
        .gives(200, &[json::<crate::areas::Detail>()]),
    op("GET", "/submissions", "submissions", "Submissions with filters and a cursor; with ?updated_since=CURSOR the change feed for incremental pulls", READERS)
        .query(SUBMISSION_QUERY).gives(200, &[json_by(submissions_or_feed)]),
    op("POST", "/submissions/review", "submissions", "Review many submissions at once (ids or filter; dry run; expected count)", REVIEWERS)
        .takes(&[json::<sub_api::BulkBody>()]).gives(200, &[json::<sub_api::BulkReviewed>()]),
    op("GET", "/submissions/{instance_id}", "submissions", "A submission: answers without sensitive values, versions, attachments, review", READERS)
        .gives(200, &[json::<sub_api::SubmissionView>()]),
    op("DELETE", "/submissions/{instance_id}", "submissions", "Delete a submission with every version and file; out of the figures at once; audited", ADMIN)
        .gives(200, &[json::<sub_api::Deletion>()]),
    op("POST", "/submissions/{instance_id}/review", "submissions", "Set a submission's review state, with a comment", REVIEWERS)
        .takes(&[json::<sub_api::ReviewBody>()]).gives(200, &[json::<crate::review::Reviewed>()]),
    op("GET", "/submissions/{instance_id}/comments", "submissions", "The comment thread", READERS)
        .gives(200, &[json::<sub_api::Comments>()]),
    op("POST", "/submissions/{instance_id}/comments", "submissions", "Add a comment", "admin, province officer, supervisor, collector")
        .takes(&[json::<sub_api::CommentBody>()]).gives(201, &[json::<crate::review::Comment>()]),
    op("GET", "/submissions/{instance_id}/xml", "submissions", "The raw XML as received (sealed XML needs a purpose, logged)", READERS)
        .query(&[VERSION, PURPOSE]).gives(200, &[text(XML)]),
    op("GET", "/submissions/{instance_id}/attachments/{name}", "submissions", "An attachment, or a photo's upright metadata-free copy", READERS)
        .query(&[q("size", Kind::OneOf(&["thumb", "review"]), "A photo's smaller JPEG copy; the stored file by default")])
        .gives(200, &[file("*/*")]),
    op("GET", "/submissions/{instance_id}/sensitive", "submissions", "The values of sensitive fields, for a stated purpose written to the access log", "admin, province officer, supervisor (scope `read_sensitive`)")
        .query(&[VERSION, PURPOSE]).gives(200, &[json::<sub_api::SensitiveValues>()]),
    op("GET", "/access-log", "audit", "Every read of sealed data: who, what, when, why", PROVINCE)
        .query(&[q("after", Kind::Integer, "The `id` of the last entry seen"), LIMIT])
        .gives(200, &[json::<sub_api::AccessLogPage>()]),
    op("GET", "/audit", "audit", "The append-only audit log", PROVINCE)
        .query(&[
            q("action", Kind::Text, "e.g. `user.create`, `submission.review`"),
            q("target", Kind::Text, "What the entry is about, e.g. a submission's instanceID or a user name"),
            q("actor", Kind::Text, "Who did it (user name)"),
            q("cursor", Kind::Integer, "`next_cursor` of the previous page"),
            LIMIT,
        ])
        .gives(200, &[json::<audit_api::AuditPage>()]),
    op("GET", "/indicators", "indicators", "The indicator definitions", INDICATOR_READERS)
        .gives(200, &[json::<indicator_api::IndicatorDefinitions>()]),
    op("GET", "/indicators/values", "indicators", "The indicator values table", INDICATOR_READERS)
        .query(VALUES_QUERY).gives(200, &[json::<crate::indicators::query::ValuesTable>()]),
    op("GET", "/indicators/{code}/values/{area}/{period}/submissions", "indicators", "The submissions behind one number; any other query parameter narrows it to one value of a dimension (e.g. `sex=female`)", INDICATOR_READERS)
        .query(BEHIND_QUERY).gives(200, &[json::<crate::indicators::query::Behind>()]),
    op("GET", "/indicators/targets", "indicators", "Targets", INDICATOR_READERS)
        .query(YEAR_QUERY).gives(200, &[json::<indicator_api::Targets>()]),
    op("POST", "/indicators/targets", "indicators", "Import targets (JSON list or CSV with these columns), all or nothing", PROVINCE)
        .takes(&[json_by(target_rows), text(CSV)]).gives(200, &[json::<indicator_api::Imported>()]),
    op("GET", "/indicators/baselines", "indicators", "Baselines", INDICATOR_READERS)
        .query(YEAR_QUERY).gives(200, &[json::<indicator_api::Baselines>()]),
    op("POST", "/indicators/baselines", "indicators", "Import baselines (JSON list or CSV with these columns), all or nothing", PROVINCE)
        .takes(&[json_by(baseline_rows), text(CSV)]).gives(200, &[json::<indicator_api::Imported>()]),
    op("GET", "/indicators/periods", "indicators", "Closed reporting periods", INDICATOR_READERS)
        .gives(200, &[json::<indicator_api::ClosedPeriods>()]),
    op("GET", "/indicators/periods/{period}", "indicators", "A closed period with its revisions", INDICATOR_READERS)
        .gives(200, &[json::<crate::indicators::closing::PeriodDetail>()]),
    op("POST", "/indicators/periods/{period}/close", "indicators", "Close a reporting period", PROVINCE)
        .may_take(&[json::<indicator_api::CloseBody>()]).gives(201, &[json::<crate::indicators::closing::ClosedPeriod>()]),
    op("GET", "/reports/project8.xlsx", "indicators", "The Project 8 report workbook: the values table by commune (and district as recorded) per content area, with totals, targets, achievement, cut-off and basis", INDICATOR_READERS)
        .query(REPORT_QUERY).gives(200, &[file(XLSX)]),
    op("GET", "/forms/{form_id}/export", "exports", "A small export of a form's submissions across its versions, sent at once; 413 above the direct limit", EXPORTERS)
        .query(EXPORT_QUERY).gives(200, EXPORT_FILES),
    op("POST", "/exports", "exports", "Start an export job {form, format, …the same parameters}; 202 with the job", EXPORTERS)
        .takes(&[json::<crate::exports::Params>()]).gives(202, &[json::<export_api::JobView>()]),
    op("GET", "/exports", "exports", "The caller's export jobs, newest first", EXPORTERS)
        .gives(200, &[json::<export_api::ExportJobs>()]),
    op("GET", "/exports/{id}", "exports", "An export job's status and progress, from any instance", EXPORTERS)
        .gives(200, &[json::<export_api::JobView>()]),
    op("GET", "/exports/{id}/download", "exports", "The finished export's file (409 not ready or failed, 410 expired)", EXPORTERS)
        .gives(200, EXPORT_FILES),
    op("GET", "/push-targets", "push", "Push targets (webhooks, DHIS2); secrets are never shown", ADMIN)
        .gives(200, &[json_by(push_targets)]),
    op("POST", "/push-targets", "push", "Create a webhook or DHIS2 target; a generated webhook secret is shown once", ADMIN)
        .takes(&[json::<crate::push::TargetInput>()]).gives(201, &[json_by(push_target)]),
    op("GET", "/push-targets/{id}", "push", "One push target, without its secret", ADMIN)
        .gives(200, &[json_by(push_target)]),
    op("PUT", "/push-targets/{id}", "push", "Replace a push target (secrets left out are kept)", ADMIN)
        .takes(&[json::<crate::push::TargetInput>()]).gives(200, &[json_by(push_target)]),
    op("DELETE", "/push-targets/{id}", "push", "Remove a push target and its deliveries", ADMIN)
        .gives(204, &[]),
    op("PUT", "/push-targets/{id}/data-elements", "push", "Replace a DHIS2 target's indicator → data element mapping (JSON, or CSV whose `disaggregation` is `dim=value;dim=value`)", ADMIN)
        .takes(&[json_by(element_rows), text(CSV)]).gives(200, &[json_by(push_target)]),
    op("PUT", "/push-targets/{id}/org-units", "push", "Replace a DHIS2 target's area → organisation unit mapping (JSON or CSV)", ADMIN)
        .takes(&[json_by(org_unit_rows), text(CSV)]).gives(200, &[json_by(push_target)]),
    op("GET", "/deliveries", "push", "The outbox: deliveries with status, attempts, next attempt, last error; newest first", ADMIN)
        .query(&[
            q("status", Kind::OneOf(&["pending", "delivered", "failed"]), "Only deliveries in this state"),
            q("target", Kind::Integer, "Only this push target's"),
            q("event", Kind::Text, "Only this event (e.g. `submission.created`)"),
            LIMIT,
            q("cursor", Kind::Integer, "`next_cursor` of the previous page"),
        ])
        .gives(200, &[json::<push_api::Deliveries>()]),
    op("GET", "/deliveries/{id}", "push", "One delivery", ADMIN)
        .gives(200, &[json::<crate::push::outbox::Delivery>()]),
    op("POST", "/deliveries/{id}/retry", "push", "Send a failed delivery again", ADMIN)
        .no_body().gives(200, &[json::<crate::push::outbox::Delivery>()]),
    op("GET", "/openapi.json", "docs", "This document", "anyone")
        .gives(200, &[json_by(any_object)]),
    op("GET", "/docs", "docs", "This document as a page", "anyone")
        .gives(200, &[text("text/html")]),
];

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

/// The `{name}` parameters of a path.
fn path_parameters(path: &str) -> Vec<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|p| p.split_once('}').map(|(name, _)| name))
        .collect()
}

fn param_schema(kind: Kind) -> Schema {
    let b = ObjectBuilder::new();
    let b = match kind {
        Kind::Text => b.schema_type(Type::String),
        Kind::Integer => b.schema_type(Type::Integer),
        Kind::Boolean => b.schema_type(Type::Boolean),
        Kind::Date => b
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))),
        Kind::Time => b
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        Kind::OneOf(values) => b
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied())),
    };
    Schema::Object(b.build())
}

fn content(schema: RefOr<Schema>) -> utoipa::openapi::content::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

/// The whole REST API as an OpenAPI document.
pub fn document() -> OpenApi {
    let mut schemas = Schemas::new();
    let error = named::<crate::error::ErrorBody>(&mut schemas);
    let mut paths = PathsBuilder::new();
    for op in OPERATIONS {
        let public = op.who.starts_with("anyone");
        let mut success = ResponseBuilder::new().description("success");
        for body in op.output {
            success = success.content(body.media, content((body.schema)(&mut schemas)));
        }
        let mut operation = OperationBuilder::new()
            .summary(Some(op.summary))
            .description(Some(format!("Who: {}.", op.who)))
            .tag(op.tag)
            .response(op.status.to_string(), success)
            .response(
                "4XX",
                ResponseBuilder::new()
                    .description("refused (401 no or bad credentials, 403 role or key scope, 404 unknown or not visible, 400 bad input)")
                    .content(JSON, content(error.clone())),
            )
            .response(
                "5XX",
                ResponseBuilder::new()
                    .description("the server failed; nothing was stored")
                    .content(JSON, content(error.clone())),
            );
        for name in path_parameters(op.path) {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(param_schema(Kind::Text))),
            );
        }
        for param in op.query {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(param.name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(param.description))
                    .schema(Some(param_schema(param.kind))),
            );
        }
        let (bodies, required) = match op.input {
            Input::Required(bodies) => (bodies, Required::True),
            Input::Optional(bodies) => (bodies, Required::False),
            Input::Unset | Input::Nothing => (&[][..], Required::False),
        };
        if !bodies.is_empty() {
            let mut request = RequestBodyBuilder::new().required(Some(required));
            for body in bodies {
                request = request.content(body.media, content((body.schema)(&mut schemas)));
            }
            operation = operation.request_body(Some(request.build()));
        }
        if !public {
            operation =
                operation.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        paths = paths.path(
            format!("/api/v1{}", op.path),
            PathItem::new(method(op.method), operation),
        );
    }
    for schema in schemas.values_mut() {
        naive_times(schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("fieldtally REST API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Send `Authorization: Bearer <access token or API key>`. An access token comes from POST /api/v1/auth/token; an API key (ftk_…) from an administrator. Errors are {\"error\":{\"code\",\"message\"}}. Times are UTC.",
                )),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .schemas_from_iter(schemas)
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .bearer_format("JWT or API key")
                            .build(),
                    ),
                )
                .build(),
        ))
        .build()
}

/// Stored times are UTC without an offset (`2025-07-01T08:30:00.123456`), which the RFC 3339
/// `date-time` format the derived schemas claim does not allow: say what they are instead.
fn naive_times(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else {
        return;
    };
    match schema {
        Schema::Object(o) => {
            if o.format == Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)) {
                o.format = None;
                o.pattern = Some(NAIVE_TIME.to_string());
                o.description
                    .get_or_insert_with(|| "UTC, without an offset".to_string());
            }
            for property in o.properties.values_mut() {
                naive_times(property);
            }
            if let Some(AdditionalProperties::RefOr(extra)) = o.additional_properties.as_deref_mut()
            {
                naive_times(extra);
            }
        }
        Schema::Array(a) => {
            if let utoipa::openapi::schema::ArrayItems::RefOrSchema(items) = &mut a.items {
                naive_times(items);
            }
        }
        Schema::OneOf(s) => s.items.iter_mut().for_each(naive_times),
        Schema::AllOf(s) => s.items.iter_mut().for_each(naive_times),
        Schema::AnyOf(s) => s.items.iter_mut().for_each(naive_times),
        _ => {}
    }
}

const NAIVE_TIME: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(serve_json))
        .route("/docs", web::get().to(page));
}

async fn serve_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// The document as a plain page: served by the binary, no script, works offline.
async fn page() -> HttpResponse {
    use maud::html;
    let markup = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "fieldtally REST API" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                h1 { "fieldtally REST API" }
                p {
                    "Every path is under " code { "/api/v1" } ". Send "
                    code { "Authorization: Bearer <access token or API key>" }
                    ". Errors are " code { "{\"error\":{\"code\",\"message\"}}" }
                    ". The same as OpenAPI: " a href="/api/v1/openapi.json" { "openapi.json" } "."
                }
                @for tag in tags() {
                    h2 { (tag) }
                    table {
                        @for op in OPERATIONS.iter().filter(|o| o.tag == tag) {
                            tr {
                                td class="m" { (op.method) }
                                td { code { "/api/v1" (op.path) } }
                                td {
                                    (op.summary) br;
                                    small { "Who: " (op.who) }
                                    @if !op.query.is_empty() {
                                        br;
                                        small {
                                            "Query: "
                                            @for (i, param) in op.query.iter().enumerate() {
                                                @if i > 0 { ", " }
                                                code { (param.name) }
                                            }
                                        }
                                    }
                                    @if let Input::Required(bodies) | Input::Optional(bodies) = op.input {
                                        br;
                                        small { "Body: " (labels(bodies)) }
                                    }
                                    br;
                                    small { "Answer: " (op.status) " " (labels(op.output)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .body(markup.into_string())
}

/// The bodies as the page names them: the schema's name (or `[name]` for a list) and the
/// content type, e.g. `TokenResponse (application/json) or text/csv`.
fn labels(bodies: &[Body]) -> String {
    let mut scratch = Schemas::new();
    let name = |schema: &RefOr<Schema>| match schema {
        RefOr::Ref(r) => r.ref_location.rsplit('/').next().map(str::to_string),
        RefOr::T(Schema::Array(a)) => match &a.items {
            utoipa::openapi::schema::ArrayItems::RefOrSchema(item) => match item.as_ref() {
                RefOr::Ref(r) => r.ref_location.rsplit('/').next().map(|n| format!("[{n}]")),
                RefOr::T(_) => None,
            },
            utoipa::openapi::schema::ArrayItems::False => None,
        },
        RefOr::T(_) => None,
    };
    if bodies.is_empty() {
        return "no content".to_string();
    }
    bodies
        .iter()
        .map(|body| match name(&(body.schema)(&mut scratch)) {
            Some(n) => format!("{n} ({})", body.media),
            None => body.media.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

fn tags() -> Vec<&'static str> {
    let mut tags: Vec<&str> = Vec::new();
    for op in OPERATIONS {
        if !tags.contains(&op.tag) {
            tags.push(op.tag);
        }
    }
    tags
}

const STYLE: &str = "body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}table{border-collapse:collapse;width:100%}td{border-top:1px solid #ccc;padding:.3em;vertical-align:top}td.m{font-weight:bold;width:5em}small{color:#555}";

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as web_test;
    use actix_web::App;

    /// The `/api/v1` resource patterns the application registers, read from its resource map,
    /// so that a new route is found without anyone listing it. actix-web offers no iterator over
    /// the map, so this reads its debug form, where every scope and resource is a nested
    /// `ResourceMap { pattern: ResourceDef { .. patterns: Single("…") .. } .. nodes: … }`; a
    /// node's full path is its open ancestors' patterns joined. (If actix-web changed that
    /// form, the test below fails loudly rather than passing with nothing found.)
    fn patterns(map: &str) -> Vec<String> {
        const NODE: &str = "ResourceMap {";
        const PATTERN: &str = "patterns: Single(\"";
        let mut out = Vec::new();
        // The nodes still open: the brace depth inside each, and its full path.
        let mut open: Vec<(usize, String)> = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < map.len() {
            let rest = &map[i..];
            if rest.starts_with(NODE) {
                depth += 1;
                while open.last().is_some_and(|(d, _)| *d >= depth) {
                    open.pop();
                }
                let own = rest
                    .find(PATTERN)
                    .and_then(|at| rest[at + PATTERN.len()..].split_once("\")"))
                    .map(|(p, _)| p)
                    .unwrap_or_default();
                let parent = open.last().map(|(_, p)| p.as_str()).unwrap_or_default();
                let full = format!("{parent}{own}");
                out.push(full.clone());
                open.push((depth, full));
                i += NODE.len();
                continue;
            }
            match rest.as_bytes()[0] {
                b'{' => depth += 1,
                b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
        out.retain(|p| p.starts_with("/api/v1/"));
        out.sort();
        out.dedup();
        out
    }

    #[actix_web::test]
    async fn every_registered_route_is_documented() {
        let app = web_test::init_service(App::new().configure(crate::api::routes).route(
            "/resource-map",
            web::get().to(|req: actix_web::HttpRequest| async move {
                format!("{:?}", req.resource_map())
            }),
        ))
        .await;
        let map = web_test::call_and_read_body(
            &app,
            web_test::TestRequest::get()
                .uri("/resource-map")
                .to_request(),
        )
        .await;
        let patterns = patterns(&String::from_utf8_lossy(&map));
        assert!(
            patterns.contains(&"/api/v1/submissions/{instance_id}".to_string()),
            "the resource map could not be read: {patterns:?}"
        );
        let documented = document();
        let mut missing = Vec::new();
        let mut found = 0;
        for pattern in &patterns {
            let uri = pattern
                .split('/')
                .map(|s| if s.starts_with('{') { "1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
                let req = web_test::TestRequest::default()
                    .method(actix_web::http::Method::from_bytes(m.as_bytes()).expect("method"))
                    .uri(&uri)
                    .to_request();
                let res = web_test::call_service(&app, req).await;
                // Another route took it (`/submissions/review` for GET is the detail's).
                if res.request().match_pattern().as_deref() != Some(pattern.as_str()) {
                    continue;
                }
                // 405: the path is registered without this method; 404 `no_route`: not at all.
                let status = res.status().as_u16();
                let body = web_test::read_body(res).await;
                let unrouted =
                    status == 404 && String::from_utf8_lossy(&body).contains("\"no_route\"");
                if status == 405 || unrouted {
                    continue;
                }
                found += 1;
                let item = documented.paths.paths.get(pattern);
                let has = item.is_some_and(|i| match m {
                    "GET" => i.get.is_some(),
                    "POST" => i.post.is_some(),
                    "PUT" => i.put.is_some(),
                    "DELETE" => i.delete.is_some(),
                    _ => i.patch.is_some(),
                });
                if !has {
                    missing.push(format!("{m} {pattern}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "routes without a line in openapi::OPERATIONS: {missing:?}"
        );
        // And nothing documented that the application does not route.
        assert_eq!(
            found,
            OPERATIONS.len(),
            "a documented operation has no route"
        );
    }

    /// Every POST and PUT says what body it reads (or that it reads none), GET and DELETE read
    /// none, and every operation's success answer has a described content (except 204).
    #[test]
    fn every_operation_describes_its_bodies() {
        let doc = serde_json::to_value(document()).expect("json");
        for op in OPERATIONS {
            let name = format!("{} {}", op.method, op.path);
            let described = &doc["paths"][format!("/api/v1{}", op.path)][op.method.to_lowercase()];
            match (op.method, op.input) {
                ("POST" | "PUT", Input::Unset) => panic!("{name}: no request body described"),
                ("POST" | "PUT", Input::Nothing) => {
                    assert!(described.get("requestBody").is_none(), "{name}")
                }
                ("POST" | "PUT", _) => {
                    let content = described["requestBody"]["content"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{name}: no request body in the document"));
                    assert!(!content.is_empty(), "{name}");
                    for (media, c) in content {
                        assert!(c["schema"].is_object(), "{name} {media}: no schema");
                    }
                }
                (_, Input::Unset) => {}
                _ => panic!("{name}: a {} reads no body", op.method),
            }
            let status = op.status.to_string();
            let success = &described["responses"][&status];
            assert!(success.is_object(), "{name}: no {status} answer");
            if op.status == 204 {
                assert!(success.get("content").is_none(), "{name}");
                continue;
            }
            let content = success["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{name}: the {status} answer has no content"));
            assert!(!content.is_empty(), "{name}");
            for (media, c) in content {
                let schema = &c["schema"];
                assert!(schema.is_object(), "{name} {media}: no schema");
                if media == JSON {
                    // A JSON answer names its fields (or is a list or choice of things that do).
                    assert!(
                        schema.get("$ref").is_some()
                            || schema.get("items").is_some()
                            || schema.get("oneOf").is_some()
                            || schema.get("properties").is_some()
                            || op.path.ends_with(".json"),
                        "{name}: the JSON answer is not described: {schema}"
                    );
                }
            }
            assert!(
                described["responses"]["4XX"]["content"][JSON]["schema"]["$ref"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("/Error"))
            );
        }
    }

    /// Every reference in the document names a schema it holds.
    #[test]
    fn every_reference_resolves() {
        fn walk(v: &serde_json::Value, refs: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(o) => {
                    if let Some(r) = o.get("$ref").and_then(|r| r.as_str()) {
                        refs.push(r.to_string());
                    }
                    o.values().for_each(|v| walk(v, refs));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let doc = serde_json::to_value(document()).expect("json");
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(refs.len() > 100, "{}", refs.len());
        for r in refs {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r} is not a component"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} is not in the document"
            );
        }
        // Timestamps are described as they are sent: UTC without an offset.
        let created =
            &doc["components"]["schemas"]["SubmissionSummary"]["properties"]["created_at"];
        assert_eq!(created["pattern"], NAIVE_TIME, "{created}");
        assert!(created.get("format").is_none(), "{created}");
    }

    #[test]
    fn every_documented_operation_names_its_path_parameters() {
        let doc = serde_json::to_value(document()).expect("json");
        let op = &doc["paths"]["/api/v1/submissions/{instance_id}/attachments/{name}"]["get"];
        let in_path = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").count());
        assert_eq!(in_path, Some(2));
        assert_eq!(
            doc["paths"]["/api/v1/auth/token"]["post"].get("security"),
            None
        );
        let query: Vec<&str> = doc["paths"]["/api/v1/submissions"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        for name in [
            "form",
            "state",
            "area",
            "since",
            "cursor",
            "limit",
            "updated_since",
        ] {
            assert!(query.contains(&name), "{name} missing from {query:?}");
        }
    }
}
