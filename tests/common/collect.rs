//! A client that speaks to the server the way ODK Collect does: it sends no credentials until it
//! gets a 401 challenge, answers with Digest (RFC 7616, qop=auth), then sends credentials
//! pre-emptively with the same nonce and a growing nonce count; it adds `deviceID` to every URL.
#![allow(dead_code)]

use std::sync::Mutex;

use reqwest::{Method, RequestBuilder, Response};

pub const DEVICE_ID: &str = "collect:e2eTestDevice01";

struct Challenge {
    realm: String,
    nonce: String,
    nc: u32,
}

pub struct Collect {
    pub http: reqwest::Client,
    /// The server URL configured in Collect (may end in `/key/{key}`).
    pub server_url: String,
    credentials: Option<(String, String)>,
    challenge: Mutex<Option<Challenge>>,
}

pub struct Attachment {
    pub name: String,
    pub bytes: Vec<u8>,
    pub content_type: String,
}

impl Attachment {
    pub fn jpeg(name: &str, bytes: Vec<u8>) -> Attachment {
        Attachment {
            name: name.to_string(),
            bytes,
            content_type: "image/jpeg".into(),
        }
    }
}

fn param(header: &str, name: &str) -> Option<String> {
    let start = header.find(&format!("{name}=\""))? + name.len() + 2;
    let end = header[start..].find('"')? + start;
    Some(header[start..end].to_string())
}

fn md5_hex(s: &str) -> String {
    super::md5_hex(s.as_bytes())
}

impl Collect {
    pub fn with_password(server_url: &str, username: &str, password: &str) -> Collect {
        Collect {
            http: reqwest::Client::new(),
            server_url: server_url.to_string(),
            credentials: Some((username.to_string(), password.to_string())),
            challenge: Mutex::new(None),
        }
    }

    pub fn with_key(server_url: &str) -> Collect {
        Collect {
            http: reqwest::Client::new(),
            server_url: server_url.to_string(),
            credentials: None,
            challenge: Mutex::new(None),
        }
    }

    /// Appends `deviceID` as Collect does, to absolute URLs or paths below the server URL.
    pub fn url(&self, path_or_url: &str) -> String {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.server_url)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}deviceID={DEVICE_ID}")
    }

    fn authorization(&self, method: &Method, url: &str) -> Option<String> {
        let (user, pass) = self.credentials.as_ref()?;
        let mut guard = self.challenge.lock().expect("lock");
        let ch = guard.as_mut()?;
        ch.nc += 1;
        let parsed = reqwest::Url::parse(url).expect("url");
        let uri = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let nc = format!("{:08x}", ch.nc);
        let ha1 = md5_hex(&format!("{user}:{}:{pass}", ch.realm));
        let ha2 = md5_hex(&format!("{}:{uri}", method.as_str()));
        let response = md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce));
        Some(format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\", algorithm=MD5",
            ch.realm, ch.nonce
        ))
    }

    /// Sends a request built by `build`, answering one Digest challenge like Collect.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Response {
        self.try_send(method, url, build).await.expect("request")
    }

    /// Like [`Collect::send`], but a broken connection is an `Err` (the server may be down).
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, reqwest::Error> {
        for _ in 0..2 {
            let mut req = build(self.http.request(method.clone(), url))
                .header("X-OpenRosa-Version", "1.0")
                .header(
                    "User-Agent",
                    "Dalvik/2.1.0 (Linux; U; Android 13) org.odk.collect.android/v2024.3.5",
                );
            if let Some(auth) = self.authorization(&method, url) {
                req = req.header("Authorization", auth);
            }
            let res = req.send().await?;
            if res.status() == 401 && self.credentials.is_some() {
                let header = res
                    .headers()
                    .get_all("www-authenticate")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find(|v| v.starts_with("Digest"))
                    .expect("a 401 must carry a Digest challenge")
                    .to_string();
                let mut guard = self.challenge.lock().expect("lock");
                let had = guard.is_some();
                *guard = Some(Challenge {
                    realm: param(&header, "realm").expect("realm"),
                    nonce: param(&header, "nonce").expect("nonce"),
                    nc: 0,
                });
                if had && !header.contains("stale=true") {
                    return Ok(res);
                }
                continue;
            }
            return Ok(res);
        }
        panic!("authentication loop");
    }

    pub async fn get(&self, path_or_url: &str) -> Response {
        let url = self.url(path_or_url);
        self.send(Method::GET, &url, |r| r).await
    }

    pub async fn head_submission(&self) -> Response {
        let url = self.url("/submission");
        self.send(Method::HEAD, &url, |r| r).await
    }

    /// POSTs a submission as Collect does: the XML part first, then one part per file whose
    /// part name is the file name, and `*isIncomplete*` when more POSTs will follow.
    pub async fn submit(&self, xml: &[u8], files: &[Attachment], incomplete: bool) -> Response {
        self.try_submit(xml, files, incomplete)
            .await
            .expect("submission request")
    }

    pub async fn try_submit(
        &self,
        xml: &[u8],
        files: &[Attachment],
        incomplete: bool,
    ) -> Result<Response, reqwest::Error> {
        let url = self.url("/submission");
        self.try_send(Method::POST, &url, |r| {
            let mut form = reqwest::multipart::Form::new().part(
                "xml_submission_file",
                reqwest::multipart::Part::bytes(xml.to_vec())
                    .file_name("instance.xml")
                    .mime_str("text/xml")
                    .expect("mime"),
            );
            for f in files {
                form = form.part(
                    f.name.clone(),
                    reqwest::multipart::Part::bytes(f.bytes.clone())
                        .file_name(f.name.clone())
                        .mime_str(&f.content_type)
                        .expect("mime"),
                );
            }
            if incomplete {
                form = form.text("*isIncomplete*", "yes");
            }
            r.multipart(form)
        })
        .await
    }
}
