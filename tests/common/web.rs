//! Signing in to the review page over plain HTTP, as a browser would: the sign-in form's
//! token cookie, the session cookie, and the CSRF token from the page.
#![allow(dead_code)]

use reqwest::redirect::Policy;

use super::Server;

/// The value of `name="NAME" value="…"` in a page.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// The `name=value` of a Set-Cookie header for `name`.
fn cookie_value(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

/// A browser session on the review page.
pub struct WebSession {
    pub http: reqwest::Client,
    pub base: String,
    /// `ft_session=…`
    pub cookie: String,
    pub csrf: String,
    /// Every Set-Cookie header of the sign-in answer, to check the cookie's attributes.
    pub set_cookie: Vec<String>,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// Signs in; returns the status of the sign-in POST and the session if it succeeded.
pub async fn sign_in(server: &Server, username: &str, password: &str) -> (u16, Option<WebSession>) {
    let http = client();
    let page = http
        .get(server.url("/ui/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(page.status(), 200);
    let login_cookie = cookie_value(&page, "ft_login").expect("login cookie");
    let html = page.text().await.expect("html");
    let token = hidden_value(&html, "login_token").expect("login token");
    let res = http
        .post(server.url("/ui/login"))
        .header("cookie", &login_cookie)
        .form(&[
            ("login_token", token.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .expect("login");
    let status = res.status().as_u16();
    let Some(cookie) = cookie_value(&res, "ft_session") else {
        return (status, None);
    };
    let set_cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let queue = http
        .get(server.url("/ui/queue"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("queue");
    assert_eq!(queue.status(), 200);
    let html = queue.text().await.expect("html");
    let csrf = hidden_value(&html, "csrf").expect("csrf token on the page");
    (
        status,
        Some(WebSession {
            http,
            base: server.base.clone(),
            cookie,
            csrf,
            set_cookie,
        }),
    )
}

impl WebSession {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET")
    }

    /// POSTs a form with the session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut all: Vec<(&str, &str)> = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// POSTs a form exactly as given (no CSRF token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(fields)
            .send()
            .await
            .expect("POST")
    }
}
