//! The page markup. maud escapes every value written with `(…)`, in text and attributes alike;
//! nothing user-supplied is ever written unescaped.

use chrono::NaiveDateTime;
use fieldtally_forms::{FieldKind, FormDef, FormLabels};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::map::Map;
use super::{may, role_label, seg, DetailData, Lang, QueueQuery, WebUser};
use crate::forms::FormVersionInfo;
use crate::review::{Decision, Selection, State};
use crate::scope::Capability;
use crate::submissions::{AttachmentView, Summary};

fn state_label(state: &str, lang: Lang) -> &'static str {
    match State::parse(state) {
        Some(State::Received) => lang.t("Mới nhận", "Received"),
        Some(State::Approved) => lang.t("Đã duyệt", "Approved"),
        Some(State::Rejected) => lang.t("Từ chối", "Rejected"),
        Some(State::HasIssues) => lang.t("Cần sửa", "Has issues"),
        Some(State::Edited) => lang.t("Đã sửa", "Edited"),
        None => "?",
    }
}

/// What a geotag or assignment flag means, for the people reviewing.
fn flag_label(flag: &str, lang: Lang) -> &'static str {
    use crate::geotag::*;
    match flag {
        NO_LOCATION => lang.t("Không có vị trí", "No location"),
        LOW_ACCURACY => lang.t("Vị trí kém chính xác", "Low location accuracy"),
        OUTSIDE_PROVINCE => lang.t("Vị trí ngoài tỉnh", "Location outside the province"),
        OUTSIDE_DISTRICT => lang.t(
            "Vị trí ngoài huyện của bản",
            "Location outside the hamlet's district",
        ),
        FAR_FROM_HAMLET => lang.t("Vị trí xa bản", "Location far from the hamlet"),
        HAMLET_NOT_ASSIGNED => lang.t(
            "Bản không được phân công",
            "Hamlet not assigned to the collector",
        ),
        ACTIVITY_IN_FUTURE => lang.t("Ngày hoạt động ở tương lai", "Activity date in the future"),
        _ => lang.t("Cảnh báo khác", "Other flag"),
    }
}

fn badge(state: &str, lang: Lang) -> Markup {
    html! { span class={ "badge " (state) } { (state_label(state, lang)) } }
}

/// A stored time as people in Sơn La read it.
fn when(t: &NaiveDateTime) -> String {
    crate::review::local_time(*t)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn layout(lang: Lang, title: &str, user: Option<&WebUser>, here: &str, body: Markup) -> Markup {
    let other = match lang {
        Lang::Vi => ("en", "English"),
        Lang::En => ("vi", "Tiếng Việt"),
    };
    let lang_link = format!("/ui/lang/{}?next={}", other.0, seg(here));
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fieldtally" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/queue" { "fieldtally" span.sub { " · " (lang.t("Dự án 8", "Project 8")) } }
                    nav {
                        a.lang href=(lang_link) hreflang=(other.0) { (other.1) }
                        @if let Some(u) = user {
                            span.who { (u.scope.username) " · " (role_label(u.scope.role, lang)) }
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(u.csrf);
                                button.link type="submit" { (lang.t("Đăng xuất", "Sign out")) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(lang: Lang, token: &str, error: Option<&str>) -> Markup {
    let body = html! {
        section.card.login {
            h1 { (lang.t("Đăng nhập", "Sign in")) }
            p.muted { (lang.t("Duyệt phiếu thu thập của Dự án 8.", "Review the submissions of Project 8.")) }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="login_token" value=(token);
                label for="username" { (lang.t("Tên đăng nhập", "User name")) }
                input #username name="username" autocomplete="username" autocapitalize="none" required;
                label for="password" { (lang.t("Mật khẩu", "Password")) }
                input #password type="password" name="password" autocomplete="current-password" required;
                button.primary type="submit" { (lang.t("Đăng nhập", "Sign in")) }
            }
        }
    };
    layout(
        lang,
        lang.t("Đăng nhập", "Sign in"),
        None,
        "/ui/login",
        body,
    )
}

pub fn error(lang: Lang, status: u16, code: &str, message: &str) -> Markup {
    let body = html! {
        section.card {
            h1 { (lang.t("Không thực hiện được", "That did not work")) }
            p.error role="alert" { (message) }
            p.muted { (status) " · " (code) }
            p { a href="/ui/queue" { "← " (lang.t("Về hàng chờ duyệt", "Back to the review queue")) } }
        }
    };
    layout(lang, lang.t("Lỗi", "Error"), None, "/ui/queue", body)
}

/// Form ids with their newest title, for the filter.
fn form_choices(forms: &[FormVersionInfo]) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for v in forms {
        match out.last_mut() {
            Some(last) if last.0 == v.form_id => last.1 = &v.title,
            _ => out.push((&v.form_id, &v.title)),
        }
    }
    out
}

fn title_of<'a>(forms: &'a [FormVersionInfo], form_id: &'a str) -> &'a str {
    forms
        .iter()
        .rev()
        .find(|v| v.form_id == form_id)
        .map(|v| v.title.as_str())
        .unwrap_or(form_id)
}

const DECISIONS: [State; 3] = [State::Approved, State::HasIssues, State::Rejected];

pub fn queue(
    user: &WebUser,
    q: &QueueQuery,
    rows: &[Summary],
    forms: &[FormVersionInfo],
    page: i64,
) -> Markup {
    let lang = user.lang;
    let choices = form_choices(forms);
    let reviewer = may(user, Capability::Review);
    let filters = q.filter_query();
    let here = if filters.is_empty() {
        "/ui/queue".to_string()
    } else {
        format!("/ui/queue?{filters}")
    };
    let next = (rows.len() as i64 == page)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let body = html! {
        h1 { (lang.t("Hàng chờ duyệt", "Review queue")) }
        @if let Some(n) = q.done {
            p.notice role="status" { (lang.t("Đã cập nhật số phiếu: ", "Submissions updated: ")) (n) }
        }
        form.filters #filters method="get" action="/ui/queue" {
            label { span { (lang.t("Biểu mẫu", "Form")) }
                select name="form" {
                    option value="" { (lang.t("Tất cả", "All")) }
                    @for (id, title) in &choices {
                        option value=(id) selected[q.form.as_deref() == Some(*id)] { (title) }
                    }
                }
            }
            label { span { (lang.t("Trạng thái", "State")) }
                select name="state" {
                    option value="" { (lang.t("Tất cả", "All")) }
                    @for s in State::ALL {
                        option value=(s.as_str()) selected[q.state.as_deref() == Some(s.as_str())] { (state_label(s.as_str(), lang)) }
                    }
                }
            }
            label { span { (lang.t("Địa bàn (mã)", "Area (code)")) }
                input type="text" name="area" inputmode="numeric" value=[q.area.as_deref()];
            }
            label { span { (lang.t("Cảnh báo", "Flag")) }
                select name="flag" {
                    option value="" { (lang.t("Tất cả", "All")) }
                    @for f in crate::geotag::ALL.iter() {
                        option value=(f) selected[q.flag.as_deref() == Some(*f)] { (flag_label(f, lang)) }
                    }
                }
            }
            label { span { (lang.t("Nhận từ ngày", "Received from")) }
                input type="date" name="from" value=[q.from.as_deref()];
            }
            label { span { (lang.t("đến ngày", "to")) }
                input type="date" name="to" value=[q.to.as_deref()];
            }
            div.actions {
                button.primary type="submit" { (lang.t("Lọc", "Filter")) }
                a href="/ui/queue" { (lang.t("Bỏ lọc", "Clear")) }
            }
        }
        form #bulk method="post" action="/ui/bulk" {
            input type="hidden" name="csrf" value=(user.csrf);
            input type="hidden" name="f_form" value=[q.form.as_deref()];
            input type="hidden" name="f_state" value=[q.state.as_deref()];
            input type="hidden" name="f_area" value=[q.area.as_deref()];
            input type="hidden" name="f_flag" value=[q.flag.as_deref()];
            input type="hidden" name="f_from" value=[q.from.as_deref()];
            input type="hidden" name="f_to" value=[q.to.as_deref()];
            @if rows.is_empty() {
                p.empty { (lang.t("Không có phiếu nào.", "No submissions.")) }
            } @else {
                table.queue {
                    thead { tr {
                        @if reviewer { th.check {} }
                        th { (lang.t("Nhận lúc", "Received")) }
                        th { (lang.t("Biểu mẫu", "Form")) }
                        th { (lang.t("Người gửi", "Collector")) }
                        th { (lang.t("Trạng thái", "State")) }
                        th { (lang.t("Mã phiếu", "ID")) }
                    } }
                    tbody {
                        @for r in rows {
                            tr.row {
                                @if reviewer { td.check { input.pick type="checkbox" name="ids" value=(r.instance_id) aria-label=(lang.t("Chọn", "Select")); } }
                                td data-label=(lang.t("Nhận lúc", "Received")) { (when(&r.created_at)) }
                                td data-label=(lang.t("Biểu mẫu", "Form")) { (title_of(forms, &r.form_id)) }
                                td data-label=(lang.t("Người gửi", "Collector")) { (r.collector) }
                                td data-label=(lang.t("Trạng thái", "State")) { (badge(&r.review_state, lang)) }
                                td data-label=(lang.t("Mã phiếu", "ID")) {
                                    a.open href={ "/ui/s/" (seg(&r.instance_id)) } { (short_id(&r.instance_id)) " →" }
                                }
                            }
                        }
                    }
                }
            }
            @if reviewer {
                fieldset.bulkbar {
                    legend { (lang.t("Duyệt hàng loạt", "Bulk review")) }
                    @if !rows.is_empty() {
                        label.all { input #select-all type="checkbox"; (lang.t("Chọn tất cả phiếu trên trang này", "Select every submission on this page")) }
                    }
                    select name="state" aria-label=(lang.t("Quyết định", "Decision")) {
                        @for s in DECISIONS { option value=(s.as_str()) { (state_label(s.as_str(), lang)) } }
                    }
                    input name="comment" maxlength="2000" placeholder=(lang.t("Nhận xét (bắt buộc khi từ chối hoặc cần sửa)", "Comment (required to reject or ask for a fix)"));
                    div.actions {
                        button.primary #bulk-selected type="submit" name="scope" value="selected" { (lang.t("Áp dụng cho phiếu đã chọn", "Apply to selected")) " (" span #picked { "0" } ")" }
                        button type="submit" name="scope" value="filter" { (lang.t("Áp dụng cho mọi phiếu khớp bộ lọc", "Apply to all matching the filter")) }
                    }
                }
            }
        }
        @if let Some(id) = next {
            p.pager {
                a #older href={ "/ui/queue?" (filters) @if !filters.is_empty() { "&" } "before=" (id) } { (lang.t("Cũ hơn", "Older")) " →" }
            }
        }
    };
    layout(
        lang,
        lang.t("Hàng chờ duyệt", "Review queue"),
        Some(user),
        &here,
        body,
    )
}

fn short_id(instance_id: &str) -> &str {
    let s = instance_id.strip_prefix("uuid:").unwrap_or(instance_id);
    s.get(..8).unwrap_or(s)
}

pub fn confirm_bulk(
    user: &WebUser,
    d: &Decision,
    sel: &Selection,
    filters: &QueueQuery,
    count: i64,
) -> Markup {
    let lang = user.lang;
    let body = html! {
        section.card #confirm {
            h1 { (lang.t("Xác nhận duyệt hàng loạt", "Confirm bulk review")) }
            p.count {
                (lang.t("Số phiếu sẽ được đánh dấu ", "Submissions to be marked "))
                (badge(d.state.as_str(), lang)) ": " strong #count { (count) }
            }
            @if let Some(c) = &d.comment { blockquote { (c) } }
            @if count == 0 {
                p { (lang.t("Không có phiếu nào cần thay đổi.", "Nothing to change.")) }
            } @else {
                form method="post" action="/ui/bulk" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    input type="hidden" name="confirm" value="yes";
                    input type="hidden" name="expected" value=(count);
                    input type="hidden" name="state" value=(d.state.as_str());
                    input type="hidden" name="comment" value=[d.comment.as_deref()];
                    input type="hidden" name="f_form" value=[filters.form.as_deref()];
                    input type="hidden" name="f_state" value=[filters.state.as_deref()];
                    input type="hidden" name="f_area" value=[filters.area.as_deref()];
                    input type="hidden" name="f_flag" value=[filters.flag.as_deref()];
                    input type="hidden" name="f_from" value=[filters.from.as_deref()];
                    input type="hidden" name="f_to" value=[filters.to.as_deref()];
                    @match sel {
                        Selection::Ids(ids) => {
                            input type="hidden" name="scope" value="selected";
                            @for id in ids { input type="hidden" name="ids" value=(id); }
                        }
                        Selection::Filter(_) => { input type="hidden" name="scope" value="filter"; }
                    }
                    button.primary #confirm-button type="submit" { (lang.t("Xác nhận", "Confirm")) }
                }
            }
            p { a href={ "/ui/queue?" (filters.filter_query()) } { (lang.t("Huỷ", "Cancel")) } }
        }
    };
    layout(
        lang,
        lang.t("Xác nhận", "Confirm"),
        Some(user),
        "/ui/queue",
        body,
    )
}

fn is_image(a: &AttachmentView) -> bool {
    a.complete
        && a.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("image/"))
}

fn file_url(instance_id: &str, name: &str, size: Option<&str>) -> String {
    let base = format!("/ui/s/{}/files/{}", seg(instance_id), seg(name));
    match size {
        Some(s) => format!("{base}?size={s}"),
        None => base,
    }
}

fn photo(instance_id: &str, a: &AttachmentView) -> Markup {
    html! {
        a.photo href=(file_url(instance_id, &a.name, Some("review"))) {
            img src=(file_url(instance_id, &a.name, Some("thumb"))) alt=(a.name) loading="lazy";
        }
    }
}

pub fn detail(user: &WebUser, data: &DetailData, map: &Map) -> Markup {
    let lang = user.lang;
    let d = &data.detail;
    let here = format!("/ui/s/{}", seg(&d.instance_id));
    let images: Vec<&AttachmentView> = d.attachments.iter().filter(|a| is_image(a)).collect();
    let last = data
        .reviews
        .iter()
        .rev()
        .find(|r| r.state != State::Edited.as_str());
    let body = html! {
        p.back { a href="/ui/queue" { "← " (lang.t("Hàng chờ duyệt", "Review queue")) } }
        h1 { (data.title) }
        dl.meta {
            dt { (lang.t("Trạng thái", "State")) } dd #state { (badge(&d.review_state, lang)) }
            dt { (lang.t("Người gửi", "Collector")) } dd { (d.collector) }
            dt { (lang.t("Nhận lúc", "Received")) } dd { (when(&d.created_at)) }
            dt { (lang.t("Phiên bản biểu mẫu", "Form version")) } dd { (d.form_version) }
            dt { (lang.t("Mã phiếu", "ID")) } dd.id { (d.instance_id) }
        }
        @if !d.flags.is_empty() {
            ul.flags #flags {
                @for f in &d.flags { li.flag data-flag=(f) { (flag_label(f, lang)) } }
            }
        }
        div.columns {
            div.side {
                @if !images.is_empty() {
                    section #photos {
                        h2 { (lang.t("Ảnh", "Photos")) }
                        div.photos { @for a in &images { (photo(&d.instance_id, a)) } }
                    }
                }
                section #map {
                    h2 { (lang.t("Vị trí", "Location")) }
                    (location(lang, d, map))
                }
            }
            div.mainc {
                section #review {
                    h2 { (lang.t("Duyệt", "Review")) }
                    @if let Some(r) = last {
                        p.last {
                            (badge(&r.state, lang)) " " (lang.t("bởi", "by")) " " strong { (r.by) } " · " (when(&r.at))
                            @if let Some(c) = &r.comment { blockquote { (c) } }
                        }
                    }
                    @if may(user, Capability::Review) {
                        form.review method="post" action={ (here) "/review" } {
                            input type="hidden" name="csrf" value=(user.csrf);
                            label for="review-comment" { (lang.t("Nhận xét (bắt buộc khi từ chối hoặc cần sửa)", "Comment (required to reject or ask for a fix)")) }
                            textarea #review-comment name="comment" rows="2" maxlength="2000" {}
                            p.hint.error #comment-needed hidden { (lang.t("Hãy ghi lý do.", "Please give a reason.")) }
                            div.actions {
                                button.approve type="submit" name="state" value="approved" { (lang.t("Duyệt", "Approve")) }
                                button.issues type="submit" name="state" value="has_issues" { (lang.t("Cần sửa", "Needs a fix")) }
                                button.reject type="submit" name="state" value="rejected" { (lang.t("Từ chối", "Reject")) }
                            }
                        }
                    }
                }
                section #fields {
                    h2 { (lang.t("Nội dung phiếu", "Answers")) }
                    (fields(lang, data))
                }
                section #comments {
                    h2 { (lang.t("Trao đổi", "Comments")) }
                    @if data.comments.is_empty() { p.muted { (lang.t("Chưa có trao đổi.", "No comments yet.")) } }
                    ol.thread {
                        @for c in &data.comments {
                            li { p.by { strong { (c.author) } " · " (when(&c.created_at)) } p.text { (c.body) } }
                        }
                    }
                    @if may(user, Capability::Comment) {
                        form.comment method="post" action={ (here) "/comments" } {
                            input type="hidden" name="csrf" value=(user.csrf);
                            label for="comment-body" { (lang.t("Viết trao đổi", "Write a comment")) }
                            textarea #comment-body name="body" rows="2" maxlength="2000" required {}
                            button type="submit" { (lang.t("Gửi", "Send")) }
                        }
                    }
                }
                section #history {
                    h2 { (lang.t("Lịch sử", "History")) }
                    ol.history {
                        @for r in &data.reviews {
                            li { (when(&r.at)) " · " strong { (r.by) } " · " (state_label(&r.from_state, lang)) " → " (badge(&r.state, lang)) }
                        }
                        @for v in &d.versions {
                            li.version {
                                (when(&v.received_at)) " · "
                                @if v.deprecated_id.is_some() { (lang.t("Bản sửa từ điện thoại", "Edit from the phone")) } @else { (lang.t("Bản đầu tiên", "First version")) }
                                @if v.current { " · " em { (lang.t("hiện hành", "current")) } }
                                @if !v.changes.is_empty() {
                                    table.changes {
                                        thead { tr { th { (lang.t("Câu hỏi", "Question")) } th { (lang.t("Trước", "Before")) } th { (lang.t("Sau", "After")) } } }
                                        tbody { @for c in &v.changes {
                                            tr { td { (change_label(&data.labels, &c.path, lang)) } td.before { (c.before.as_deref().unwrap_or("—")) } td.after { (c.after.as_deref().unwrap_or("—")) } }
                                        } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(lang, &data.title, Some(user), &here, body)
}

/// `members[2]/member_age` → "Thành viên 2 › Tuổi".
fn change_label(labels: &FormLabels, path: &str, lang: Lang) -> String {
    match path.split_once('[').and_then(|(repeat, rest)| {
        let (n, field) = rest.split_once("]/")?;
        Some((repeat, n, field))
    }) {
        Some((repeat, n, field)) => {
            let r = labels.label(repeat, lang.code()).unwrap_or(repeat);
            let full = format!("{repeat}/{field}");
            let f = labels.label(&full, lang.code()).unwrap_or(field);
            format!("{r} {n} › {f}")
        }
        None => labels.label(path, lang.code()).unwrap_or(path).to_string(),
    }
}

fn location(lang: Lang, d: &crate::submissions::Detail, map: &Map) -> Markup {
    let Some(g) = &d.geopoint else {
        return html! { p.muted #no-location { (lang.t("Phiếu không có vị trí.", "The submission has no location.")) } };
    };
    let point = map.project(g.lat, g.lon);
    html! {
        svg.map viewBox={ "0 0 " (format!("{:.0} {:.1}", map.width, map.height)) } role="img" aria-label=(lang.t("Bản đồ tỉnh Sơn La", "Map of Sơn La province")) {
            image href="/ui/assets/districts.svg" x="0" y="0" width=(format!("{:.0}", map.width)) height=(format!("{:.1}", map.height)) {}
            @if let Some((x, y)) = point {
                circle.halo cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="22" {}
                circle.point #point cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="9" {}
            }
        }
        p.coords {
            (format!("{:.5}, {:.5}", g.lat, g.lon))
            @if let Some(a) = g.accuracy { " · ± " (format!("{a:.0}")) " m" }
        }
        @if point.is_none() { p.flag { (lang.t("Vị trí nằm ngoài tỉnh Sơn La.", "The location is outside Sơn La province.")) } }
    }
}

/// The answers laid out in form order with the form's labels; repeats as tables.
fn fields(lang: Lang, data: &DetailData) -> Markup {
    let values = &data.detail.fields;
    let Some(form) = &data.form else {
        // The form version is unknown: show the stored paths.
        return html! { pre.raw { (serde_json::to_string_pretty(values).unwrap_or_default()) } };
    };
    let mut shown_repeats: Vec<&str> = Vec::new();
    let mut last_group = String::new();
    html! {
        table.answers {
            @for f in &form.fields {
                @if !f.path.starts_with("meta/") {
                    @if let Some(repeat) = form.repeats.iter().find(|r| f.path.starts_with(&format!("{r}/"))) {
                        @if !shown_repeats.contains(&repeat.as_str()) {
                            ({ shown_repeats.push(repeat); repeat_table(lang, data, form, repeat) })
                        }
                    } @else {
                        @let group = f.path.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                        @if group != last_group {
                            ({ last_group = group.to_string(); html!{} })
                            @if let Some(label) = data.labels.label(group, lang.code()) {
                                tr.group { th colspan="2" { (label) } }
                            }
                        }
                        tr {
                            th { (field_label(data, &f.path, lang)) }
                            td { (value(lang, data, &f.path, &f.kind, values.get(&f.path))) }
                        }
                    }
                }
            }
        }
    }
}

/// A question's label; pyxform's metadata questions have none, so they get names here.
fn field_label<'a>(data: &'a DetailData, path: &'a str, lang: Lang) -> &'a str {
    if let Some(l) = data.labels.label(path, lang.code()) {
        return l;
    }
    match path {
        "start" => lang.t("Bắt đầu điền", "Started"),
        "end" => lang.t("Điền xong", "Finished"),
        "today" => lang.t("Ngày điền", "Day filled in"),
        "start_geopoint" | "start-geopoint" => {
            lang.t("Vị trí khi mở phiếu", "Location when opened")
        }
        "deviceid" => lang.t("Mã thiết bị", "Device"),
        _ => path,
    }
}

/// `"21.3256 103.9188 650.0 8.5"` → `21.32560, 103.91880 · ± 9 m`.
fn geopoint_text(text: &str) -> String {
    let n: Vec<f64> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    match n.as_slice() {
        [lat, lon, _, acc, ..] => format!("{lat:.5}, {lon:.5} · ± {acc:.0} m"),
        [lat, lon, ..] => format!("{lat:.5}, {lon:.5}"),
        _ => text.to_string(),
    }
}

fn repeat_table(lang: Lang, data: &DetailData, form: &FormDef, repeat: &str) -> Markup {
    let prefix = format!("{repeat}/");
    let columns: Vec<(&str, &FieldKind, String)> = form
        .fields
        .iter()
        .filter_map(|f| {
            let rel = f.path.strip_prefix(&prefix)?;
            // Nested repeats are shown as text inside their parent's cell.
            (!form
                .repeats
                .iter()
                .any(|r| f.path.starts_with(&format!("{r}/")) && r.len() > repeat.len()))
            .then(|| (rel, &f.kind, f.path.clone()))
        })
        .collect();
    let items: Vec<&Value> = data
        .detail
        .fields
        .get(repeat)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    html! {
        tr.group { th colspan="2" { (data.labels.label(repeat, lang.code()).unwrap_or(repeat)) " (" (items.len()) ")" } }
        tr.repeat { td colspan="2" {
            div.scroll { table.repeat {
                thead { tr { th { "#" } @for (rel, _, path) in &columns { th { (data.labels.label(path, lang.code()).unwrap_or(rel)) } } } }
                tbody {
                    @for (i, item) in items.iter().enumerate() {
                        tr { td { (i + 1) } @for (rel, kind, path) in &columns { td { (value(lang, data, path, kind, item.get(*rel))) } } }
                    }
                }
            } }
        } }
    }
}

fn value(lang: Lang, data: &DetailData, path: &str, kind: &FieldKind, v: Option<&Value>) -> Markup {
    let labels = &data.labels;
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    match (kind, v) {
        (_, None | Some(Value::Null)) => html! { span.muted { "—" } },
        (FieldKind::Select1, Some(v)) => {
            let t = text(v);
            html! { (labels.choice(path, &t, lang.code()).unwrap_or(&t)) }
        }
        (FieldKind::Select, Some(Value::Array(items))) => {
            let words: Vec<String> = items
                .iter()
                .map(|i| {
                    let t = text(i);
                    labels
                        .choice(path, &t, lang.code())
                        .map(str::to_string)
                        .unwrap_or(t)
                })
                .collect();
            html! { (words.join(", ")) }
        }
        (FieldKind::Geopoint, Some(v)) => html! { (geopoint_text(&text(v))) },
        (FieldKind::Geotrace | FieldKind::Geoshape, Some(v)) => {
            let points = text(v).split(';').filter(|p| !p.trim().is_empty()).count();
            html! { (points) " " (lang.t("điểm", "points")) }
        }
        (FieldKind::Binary, Some(v)) => {
            let name = text(v);
            match data.detail.attachments.iter().find(|a| a.name == name) {
                Some(a) if is_image(a) => photo(&data.detail.instance_id, a),
                Some(a) if a.complete => {
                    html! { a href=(file_url(&data.detail.instance_id, &a.name, None)) { (a.name) } }
                }
                _ => {
                    html! { (name) " " span.muted { (lang.t("(chưa nhận được tệp)", "(file not received yet)")) } }
                }
            }
        }
        (_, Some(v)) => html! { (text(v)) },
    }
}
