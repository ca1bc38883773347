//! One phone as ODK Collect behaves on the wire: OpenRosa headers, HTTP Digest (the first
//! request is answered 401 with a challenge, later ones reuse the nonce with a growing nonce
//! count), HEAD before uploading, multipart POST with the XML part first.

use md5::{Digest as _, Md5};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

struct Challenge {
    realm: String,
    nonce: String,
    nc: u32,
}

pub struct Phone {
    http: reqwest::Client,
    base: String,
    username: String,
    password: String,
    device_id: String,
    challenge: Option<Challenge>,
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn param(header: &str, key: &str) -> Option<String> {
    let start = header.find(&format!("{key}=\""))? + key.len() + 2;
    let end = header[start..].find('"')? + start;
    Some(header[start..end].to_string())
}

/// A file to attach to a submission.
pub struct Attachment {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Phone {
    pub fn new(base: &str, username: &str, password: &str, device: usize) -> anyhow::Result<Phone> {
        // One connection per phone, kept alive like Collect's OkHttp client.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        Ok(Phone {
            http,
            base: base.trim_end_matches('/').to_string(),
            username: username.to_string(),
            password: password.to_string(),
            device_id: format!("collect:bench{device:06}"),
            challenge: None,
        })
    }

    pub fn url(&self, path: &str) -> String {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}deviceID={}", self.device_id)
    }

    fn authorization(&mut self, method: &Method, url: &str) -> Option<String> {
        let ch = self.challenge.as_mut()?;
        ch.nc += 1;
        let parsed = reqwest::Url::parse(url).ok()?;
        let uri = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let nc = format!("{:08x}", ch.nc);
        let ha1 = md5_hex(&format!("{}:{}:{}", self.username, ch.realm, self.password));
        let ha2 = md5_hex(&format!("{}:{uri}", method.as_str()));
        let response = md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce));
        Some(format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\", algorithm=MD5",
            self.username, ch.realm, ch.nonce
        ))
    }

    /// Sends a request, answering a Digest challenge (a first 401, or a stale nonce) once.
    pub async fn send(
        &mut self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> reqwest::Result<Response> {
        let mut answered = false;
        loop {
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
            if res.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(res);
            }
            let Some(header) = res
                .headers()
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.starts_with("Digest"))
                .map(str::to_string)
            else {
                return Ok(res);
            };
            let (Some(realm), Some(nonce)) = (param(&header, "realm"), param(&header, "nonce"))
            else {
                return Ok(res);
            };
            self.challenge = Some(Challenge {
                realm,
                nonce,
                nc: 0,
            });
            answered = true;
        }
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Result<Response> {
        let url = self.url(path);
        self.send(Method::GET, &url, |r| r).await
    }

    /// The HEAD Collect sends before uploading, to learn the submission URL and size limit.
    pub async fn head_submission(&mut self) -> reqwest::Result<Response> {
        let url = self.url("/submission");
        self.send(Method::HEAD, &url, |r| r).await
    }

    /// POSTs a submission as Collect does: the XML part first, then one part per file.
    pub async fn submit(&mut self, xml: &[u8], files: &[Attachment]) -> reqwest::Result<Response> {
        let url = self.url("/submission");
        self.send(Method::POST, &url, |r| {
            let mut form = reqwest::multipart::Form::new().part(
                "xml_submission_file",
                reqwest::multipart::Part::bytes(xml.to_vec())
                    .file_name("submission.xml")
                    .mime_str("text/xml")
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(xml.to_vec())),
            );
            for f in files {
                let part =
                    reqwest::multipart::Part::bytes(f.bytes.clone()).file_name(f.name.clone());
                let part = match part.mime_str("image/jpeg") {
                    Ok(p) => p,
                    Err(_) => reqwest::multipart::Part::bytes(f.bytes.clone()),
                };
                form = form.part(f.name.clone(), part);
            }
            r.multipart(form)
        })
        .await
    }
}
