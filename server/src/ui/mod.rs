//! The review web page under `/ui`: sign in, the review queue, a submission's detail, review
//! and comments. Server-rendered HTML (maud escapes every value), one small script and one
//! stylesheet, all served by the binary; Vietnamese by default, English on request.
//!
//! Security: session cookie `HttpOnly`, `SameSite=Strict`, `Secure` over https; a CSRF token
//! on every state-changing form; a strict content security policy (no inline script or style,
//! nothing from other sites); no personal data in URLs (only opaque ids and filters).

mod map;
mod pages;
mod session;

use actix_web::http::{header, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

use crate::auth::check_password;
use crate::error::AppError;
use crate::review::{self, BulkFilter, Decision, Selection};
use crate::scope::Capability;
use crate::state::AppState;
use crate::submissions::{self, Filter};
use crate::{forms, users};
pub use session::WebUser;

/// Rows per queue page.
const PAGE_SIZE: i64 = 50;

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { redirect("/ui/queue") }))
        .service(
            web::scope("/ui")
                .wrap(
                    DefaultHeaders::new()
                        .add((header::CONTENT_SECURITY_POLICY, CSP))
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                        .add((header::REFERRER_POLICY, "same-origin"))
                        .add((header::X_FRAME_OPTIONS, "DENY"))
                        .add((header::CACHE_CONTROL, "no-store")),
                )
                .app_data(web::PayloadConfig::new(256 * 1024))
                .app_data(
                    web::QueryConfig::default().error_handler(|e, _| {
                        AppError::bad_request("bad_query", e.to_string()).into()
                    }),
                )
                .route("", web::get().to(|| async { redirect("/ui/queue") }))
                .route("/", web::get().to(|| async { redirect("/ui/queue") }))
                .route("/login", web::get().to(login_page))
                .route("/login", web::post().to(login))
                .route("/logout", web::post().to(logout))
                .route("/lang/{code}", web::get().to(set_lang))
                .route("/queue", web::get().to(queue))
                .route("/bulk", web::post().to(bulk))
                .route("/s/{instance_id}", web::get().to(detail))
                .route("/s/{instance_id}/review", web::post().to(review_one))
                .route("/s/{instance_id}/comments", web::post().to(comment))
                .route("/s/{instance_id}/files/{name}", web::get().to(file))
                .route("/assets/app.css", web::get().to(css))
                .route("/assets/app.js", web::get().to(js))
                .route("/assets/districts.svg", web::get().to(districts_svg)),
        );
}

/// The page's two languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

const LANG_COOKIE: &str = "ft_lang";

impl Lang {
    pub fn from_request(req: &HttpRequest) -> Lang {
        match req.cookie(LANG_COOKIE).as_ref().map(|c| c.value()) {
            Some("en") => Lang::En,
            _ => Lang::Vi,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    /// The text in this language.
    pub fn t(self, vi: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Vi => vi,
            Lang::En => en,
        }
    }
}

/// What a page handler can fail with: not signed in (go to the sign-in page), or an error
/// shown as a page.
#[derive(Debug)]
pub enum UiError {
    SignIn,
    App(Box<AppError>, Lang),
}

impl UiError {
    pub fn app(e: AppError, lang: Lang) -> UiError {
        UiError::App(Box::new(e), lang)
    }
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UiError::SignIn => f.write_str("sign in required"),
            UiError::App(e, _) => write!(f, "{e}"),
        }
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::SignIn => StatusCode::SEE_OTHER,
            UiError::App(e, _) => e.parts().0,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            UiError::SignIn => redirect("/ui/login"),
            UiError::App(e, lang) => {
                let (status, code, message) = e.parts();
                html(status, pages::error(*lang, status.as_u16(), code, &message))
            }
        }
    }
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

fn html(status: StatusCode, body: maud::Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body.into_string())
}

/// A URL path segment: instanceIDs hold `:`, file names may hold anything.
pub fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The fields of an `application/x-www-form-urlencoded` body; repeated names (checkboxes)
/// keep every value.
struct FormBody(Vec<(String, String)>);

impl FormBody {
    fn parse(bytes: &[u8]) -> FormBody {
        FormBody(url::form_urlencoded::parse(bytes).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }
}

async fn login_page(req: HttpRequest) -> HttpResponse {
    login_form(&req, Lang::from_request(&req), None, StatusCode::OK)
}

/// The sign-in form with a fresh token in a cookie and in the form (double submit), so a
/// foreign page cannot sign a browser in to an account of its choosing.
fn login_form(
    req: &HttpRequest,
    lang: Lang,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let token = session::random_token();
    let mut res = html(status, pages::login(lang, &token, error));
    let _ = res.add_cookie(&session::cookie(
        req,
        session::LOGIN_COOKIE,
        token,
        "/ui/login",
    ));
    res
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let lang = Lang::from_request(&req);
    session::check_origin(&req)?;
    let form = FormBody::parse(&body);
    let cookie = req
        .cookie(session::LOGIN_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    if !form
        .get("login_token")
        .is_some_and(|t| session::same(t, &cookie))
    {
        let msg = lang.t(
            "Phiên đăng nhập đã hết hạn, hãy thử lại.",
            "The sign-in form expired; please try again.",
        );
        return Ok(login_form(&req, lang, Some(msg), StatusCode::FORBIDDEN));
    }
    let username = form.get("username").unwrap_or_default().trim().to_string();
    let password = form.get("password").unwrap_or_default().to_string();
    let ip = crate::auth::client_ip(&req, &state.config.trusted_proxies);
    let user = check_password(&state, &username, password, ip)
        .await
        .map_err(|e| UiError::app(e, lang))?;
    let Some(user) = user else {
        let msg = lang.t(
            "Sai tên đăng nhập hoặc mật khẩu.",
            "Wrong user name or password.",
        );
        return Ok(login_form(&req, lang, Some(msg), StatusCode::UNAUTHORIZED));
    };
    let role = user.role().map_err(|e| UiError::app(e, lang))?;
    if !Capability::UseWebPage.allows(role) {
        let msg = lang.t(
            "Tài khoản dịch vụ không đăng nhập được trang này.",
            "Service accounts cannot sign in to this page.",
        );
        return Ok(login_form(&req, lang, Some(msg), StatusCode::FORBIDDEN));
    }
    let token = session::random_token();
    let csrf = session::random_token();
    let (t, c) = (token.clone(), csrf.clone());
    state
        .db
        .write(move |conn| session::create(conn, &user, &t, &c))
        .await
        .map_err(|e| UiError::app(e, lang))?;
    let mut res = redirect("/ui/queue");
    let _ = res.add_cookie(&session::cookie(
        &req,
        session::SESSION_COOKIE,
        token,
        "/ui",
    ));
    let mut gone = session::cookie(&req, session::LOGIN_COOKIE, String::new(), "/ui/login");
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    Ok(res)
}

async fn logout(
    req: HttpRequest,
    user: WebUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let form = FormBody::parse(&body);
    user.check_csrf(&req, form.get("csrf"))?;
    let token = user.token.clone();
    state
        .db
        .write(move |conn| session::delete(conn, &token))
        .await
        .map_err(|e| UiError::app(e, user.lang))?;
    let mut res = redirect("/ui/login");
    let mut gone = session::cookie(&req, session::SESSION_COOKIE, String::new(), "/ui");
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    Ok(res)
}

#[derive(Deserialize)]
struct LangQuery {
    next: Option<String>,
}

async fn set_lang(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<LangQuery>,
) -> HttpResponse {
    let lang = if path.as_str() == "en" { "en" } else { "vi" };
    // Only a path of this page: never an open redirect to another site.
    let next = query
        .into_inner()
        .next
        .filter(|n| n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/ui/queue".into());
    let mut res = redirect(&next);
    let mut c = session::cookie(&req, LANG_COOKIE, lang.to_string(), "/");
    c.set_max_age(actix_web::cookie::time::Duration::days(365));
    let _ = res.add_cookie(&c);
    res
}

/// The queue's filters, as they appear in its URL (no personal data: ids, states, dates).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct QueueQuery {
    pub form: Option<String>,
    pub state: Option<String>,
    /// An area code (hamlet, commune, district or province).
    pub area: Option<String>,
    /// A geotag or assignment flag.
    pub flag: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub before: Option<i64>,
    pub done: Option<i64>,
}

impl QueueQuery {
    fn clean(mut self) -> Self {
        for v in [
            &mut self.form,
            &mut self.state,
            &mut self.area,
            &mut self.flag,
            &mut self.from,
            &mut self.to,
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *v = None;
            }
        }
        self
    }

    fn date(s: &Option<String>, lang: Lang) -> Result<Option<chrono::NaiveDate>, UiError> {
        s.as_deref()
            .map(|d| {
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                    UiError::app(
                        AppError::bad_request("bad_date", "dates are written YYYY-MM-DD"),
                        lang,
                    )
                })
            })
            .transpose()
    }

    fn bulk_filter(&self, lang: Lang) -> Result<BulkFilter, UiError> {
        Ok(BulkFilter {
            form: self.form.clone(),
            state: self.state.clone(),
            collector: None,
            area: self.area.clone(),
            flag: self.flag.clone(),
            received_from: Self::date(&self.from, lang)?,
            received_to: Self::date(&self.to, lang)?,
        })
    }

    /// The query string of the filters alone (for links that keep them).
    pub fn filter_query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("form", &self.form),
            ("state", &self.state),
            ("area", &self.area),
            ("flag", &self.flag),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

async fn queue(
    user: WebUser,
    state: web::Data<AppState>,
    query: web::Query<QueueQuery>,
) -> Result<HttpResponse, UiError> {
    let lang = user.lang;
    let q = query.into_inner().clean();
    if let Some(s) = &q.state {
        if review::State::parse(s).is_none() {
            return Err(UiError::app(
                AppError::bad_request("bad_state", "unknown review state"),
                lang,
            ));
        }
    }
    let bf = q.bulk_filter(lang)?;
    let mut filter = Filter::new(user.scope.visibility(), PAGE_SIZE);
    filter.form_id = q.form.clone();
    filter.state = q.state.clone();
    filter.area = q.area.clone();
    filter.flag = q.flag.clone();
    (filter.received_since, filter.received_before) = bf.received_range();
    filter.cursor_id = q.before;
    filter.newest_first = true;
    let (rows, forms) = state
        .db
        .read(move |conn| {
            Ok((
                submissions::list(conn, &filter)?,
                forms::all_versions(conn)?,
            ))
        })
        .await
        .map_err(|e| UiError::app(e, lang))?;
    Ok(html(
        StatusCode::OK,
        pages::queue(&user, &q, &rows, &forms, PAGE_SIZE),
    ))
}

async fn bulk(
    req: HttpRequest,
    user: WebUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let lang = user.lang;
    let form = FormBody::parse(&body);
    user.check_csrf(&req, form.get("csrf"))?;
    let ui = |e| UiError::app(e, lang);
    let decision =
        Decision::new(form.get("state").unwrap_or_default(), form.get("comment")).map_err(ui)?;
    let filters = QueueQuery {
        form: form.get("f_form").map(str::to_string),
        state: form.get("f_state").map(str::to_string),
        area: form.get("f_area").map(str::to_string),
        flag: form.get("f_flag").map(str::to_string),
        from: form.get("f_from").map(str::to_string),
        to: form.get("f_to").map(str::to_string),
        ..Default::default()
    };
    let by_filter = form.get("scope") == Some("filter");
    let selection = if by_filter {
        Selection::Filter(filters.bulk_filter(lang)?)
    } else {
        Selection::Ids(form.all("ids"))
    };
    let scope = user.scope.clone();
    let indicators = state.indicators.clone();
    let confirmed = form.get("confirm") == Some("yes");
    if !confirmed {
        let (sel, dec) = (selection.clone(), decision.clone());
        let outcome = state
            .db
            .read(move |conn| {
                review::review_bulk(conn, &indicators, &scope, &sel, &dec, true, None)
            })
            .await
            .map_err(ui)?;
        return Ok(html(
            StatusCode::OK,
            pages::confirm_bulk(&user, &decision, &selection, &filters, outcome.count),
        ));
    }
    let expected = form.get("expected").and_then(|e| e.parse().ok());
    let outcome = state
        .db
        .write(move |conn| {
            review::review_bulk(
                conn,
                &indicators,
                &scope,
                &selection,
                &decision,
                false,
                expected,
            )
        })
        .await
        .map_err(ui)?;
    let back = filters.filter_query();
    let sep = if back.is_empty() { "" } else { "&" };
    Ok(redirect(&format!(
        "/ui/queue?{back}{sep}done={}",
        outcome.count
    )))
}

/// Everything the detail page shows.
pub struct DetailData {
    pub detail: submissions::Detail,
    pub reviews: Vec<review::ReviewEvent>,
    pub comments: Vec<review::Comment>,
    pub form: Option<fieldtally_forms::FormDef>,
    pub labels: fieldtally_forms::FormLabels,
    pub title: String,
}

async fn detail(
    user: WebUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let lang = user.lang;
    let id = path.into_inner();
    let scope = user.scope.clone();
    let data = state
        .db
        .read(move |conn| {
            let sid = crate::api::submissions::visible_id(conn, &scope, &id)?;
            let detail = submissions::detail(conn, &id)?;
            let reviews = review::history(conn, sid)?;
            let comments = review::thread(conn, sid)?;
            let version = forms::find_version(conn, &detail.form_id, &detail.form_version)?;
            let (form, labels, title) = match version {
                Some(v) => {
                    let xml = forms::xml(conn, v.id)?;
                    (
                        fieldtally_forms::parse_form(&xml).ok(),
                        fieldtally_forms::parse_labels(&xml).unwrap_or_default(),
                        v.title,
                    )
                }
                None => (None, Default::default(), detail.form_id.clone()),
            };
            Ok(DetailData {
                detail,
                reviews,
                comments,
                form,
                labels,
                title,
            })
        })
        .await
        .map_err(|e| UiError::app(e, lang))?;
    Ok(html(
        StatusCode::OK,
        pages::detail(&user, &data, map::map()),
    ))
}

fn back_to(instance_id: &str, anchor: &str) -> HttpResponse {
    redirect(&format!("/ui/s/{}{anchor}", seg(instance_id)))
}

async fn review_one(
    req: HttpRequest,
    user: WebUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let lang = user.lang;
    let form = FormBody::parse(&body);
    user.check_csrf(&req, form.get("csrf"))?;
    let id = path.into_inner();
    let decision = Decision::new(form.get("state").unwrap_or_default(), form.get("comment"))
        .map_err(|e| UiError::app(e, lang))?;
    let scope = user.scope.clone();
    let indicators = state.indicators.clone();
    let i = id.clone();
    state
        .db
        .write(move |conn| review::review_one(conn, &indicators, &scope, &i, &decision))
        .await
        .map_err(|e| UiError::app(e, lang))?;
    Ok(back_to(&id, "#review"))
}

async fn comment(
    req: HttpRequest,
    user: WebUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let lang = user.lang;
    let form = FormBody::parse(&body);
    user.check_csrf(&req, form.get("csrf"))?;
    let id = path.into_inner();
    let text = form.get("body").unwrap_or_default().to_string();
    let scope = user.scope.clone();
    let i = id.clone();
    state
        .db
        .write(move |conn| review::add_comment(conn, &scope, &i, &text))
        .await
        .map_err(|e| UiError::app(e, lang))?;
    Ok(back_to(&id, "#comments"))
}

#[derive(Deserialize)]
struct FileQuery {
    size: Option<String>,
}

async fn file(
    req: HttpRequest,
    user: WebUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<FileQuery>,
) -> Result<HttpResponse, UiError> {
    let lang = user.lang;
    let (id, name) = path.into_inner();
    let mut res = crate::api::submissions::send_attachment(
        &req,
        &state,
        user.scope,
        id,
        name,
        query.into_inner().size,
    )
    .await
    .map_err(|e| UiError::app(e, lang))?;
    // Photos may be kept by the browser (they never change); the page itself is never cached.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, max-age=86400"),
    );
    Ok(res)
}

fn asset<B: actix_web::body::MessageBody + 'static>(
    content_type: &'static str,
    body: B,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

async fn css() -> HttpResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    )
}

async fn js() -> HttpResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    )
}

async fn districts_svg() -> HttpResponse {
    asset("image/svg+xml", map::map().svg.clone())
}

/// The role's name as the page shows it.
pub fn role_label(role: users::Role, lang: Lang) -> &'static str {
    use users::Role::*;
    match role {
        Admin => lang.t("Quản trị viên", "Administrator"),
        ProvinceOfficer => lang.t("Cán bộ tỉnh", "Province officer"),
        Supervisor => lang.t("Giám sát viên", "Supervisor"),
        Collector => lang.t("Cộng tác viên", "Collector"),
        ApiClient => lang.t("Tài khoản dịch vụ", "Service account"),
    }
}

/// Whether the page should offer review buttons and comment boxes to this user.
pub fn may(user: &WebUser, c: Capability) -> bool {
    user.scope.may(c)
}
