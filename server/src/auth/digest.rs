//! HTTP Digest authentication (RFC 7616 with MD5 and `qop="auth"`), the scheme ODK Collect uses
//! over plain http. Nonces are stateless: a timestamp signed with a server secret kept in the
//! database, so every server instance on that database accepts every other instance's nonces.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha2::Sha256;

pub const REALM: &str = "fieldtally";

/// How long a nonce stays valid; a phone with an older one is told `stale=true` and retries
/// without asking the collector for the password again.
pub const NONCE_LIFETIME_SECS: i64 = 3600;

/// `md5(username:realm:password)`, stored per user so Digest can be verified without the password.
pub fn ha1(username: &str, password: &str) -> String {
    md5_hex(format!("{username}:{REALM}:{password}").as_bytes())
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// A nonce: the time it was made, random bytes (so that no two clients share one, which matters
/// for single use), and a MAC over both.
pub fn make_nonce(secret: &[u8], now: i64) -> String {
    let salt = hex::encode(rand::random::<[u8; 8]>());
    format!("{now:x}.{salt}.{}", nonce_mac(secret, now, &salt))
}

fn nonce_mac(secret: &[u8], ts: i64, salt: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(format!("{ts}.{salt}").as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

#[derive(Debug, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    Stale,
    Invalid,
}

pub fn check_nonce(secret: &[u8], nonce: &str, now: i64) -> NonceCheck {
    let mut parts = nonce.splitn(3, '.');
    let (Some(ts_hex), Some(salt), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return NonceCheck::Invalid;
    };
    let Ok(ts) = i64::from_str_radix(ts_hex, 16) else {
        return NonceCheck::Invalid;
    };
    if !constant_time_eq(nonce_mac(secret, ts, salt).as_bytes(), mac.as_bytes()) {
        return NonceCheck::Invalid;
    }
    if now - ts > NONCE_LIFETIME_SECS || ts - now > 60 {
        NonceCheck::Stale
    } else {
        NonceCheck::Valid
    }
}

/// When the nonce stops being accepted (unix seconds), from its signed timestamp.
pub fn nonce_expiry(nonce: &str) -> Option<i64> {
    let (ts_hex, _) = nonce.split_once('.')?;
    let ts = i64::from_str_radix(ts_hex, 16).ok()?;
    ts.checked_add(NONCE_LIFETIME_SECS)
}

pub fn challenge(nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!("Digest realm=\"{REALM}\", qop=\"auth\", algorithm=MD5, nonce=\"{nonce}\"{stale}")
}

/// The parameters of an `Authorization: Digest …` header.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DigestParams {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub algorithm: Option<String>,
}

/// Parses the part after `Digest `: comma-separated `key=value` or `key="quoted value"`.
pub fn parse(header_value: &str) -> Option<DigestParams> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut rest = header_value.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => value.push(ch),
                }
            }
            (value, &quoted[end?..])
        } else {
            match after.find(',') {
                Some(i) => (after[..i].trim().to_string(), &after[i..]),
                None => (after.trim().to_string(), ""),
            }
        };
        map.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(DigestParams {
        username: map.remove("username")?,
        realm: map.remove("realm")?,
        nonce: map.remove("nonce")?,
        uri: map.remove("uri")?,
        response: map.remove("response")?,
        qop: map.remove("qop"),
        nc: map.remove("nc"),
        cnonce: map.remove("cnonce"),
        algorithm: map.remove("algorithm"),
    })
}

/// Whether `params.response` proves knowledge of the password behind `ha1` for this request.
pub fn verify(params: &DigestParams, ha1: &str, method: &str) -> bool {
    if params.realm != REALM {
        return false;
    }
    if let Some(alg) = &params.algorithm {
        if !alg.eq_ignore_ascii_case("MD5") {
            return false;
        }
    }
    let ha2 = md5_hex(format!("{method}:{}", params.uri).as_bytes());
    let expected = match (&params.qop, &params.nc, &params.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) if qop == "auth" => {
            md5_hex(format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", params.nonce).as_bytes())
        }
        (None, _, _) => md5_hex(format!("{ha1}:{}:{ha2}", params.nonce).as_bytes()),
        _ => return false,
    };
    constant_time_eq(
        expected.as_bytes(),
        params.response.to_ascii_lowercase().as_bytes(),
    )
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_verifies() {
        // The worked example of RFC 2617 section 3.5, with our realm substituted consistently.
        let ha1 = ha1("Mufasa", "Circle Of Life");
        let nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
        let ha2 = md5_hex(b"GET:/dir/index.html");
        let response = md5_hex(format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}").as_bytes());
        let header = format!(
            "username=\"Mufasa\", realm=\"fieldtally\", nonce=\"{nonce}\", uri=\"/dir/index.html\", \
             qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{response}\", opaque=\"x\""
        );
        let params = parse(&header).expect("parses");
        assert_eq!(params.username, "Mufasa");
        assert_eq!(params.qop.as_deref(), Some("auth"));
        assert!(verify(&params, &ha1, "GET"));
        assert!(!verify(&params, &ha1, "POST"));
        assert!(!verify(&params, &super::ha1("Mufasa", "wrong"), "GET"));
    }

    #[test]
    fn parses_escaped_quotes_and_unquoted_values() {
        let p =
            parse(r#"username="a\"b", realm="fieldtally", nonce=n, uri="/x?y=1,2", response=abc"#)
                .expect("parses");
        assert_eq!(p.username, "a\"b");
        assert_eq!(p.nonce, "n");
        assert_eq!(p.uri, "/x?y=1,2");
        assert_eq!(p.response, "abc");
        assert!(parse("username=\"unterminated").is_none());
        assert!(parse("realm=\"x\"").is_none());
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let secret = b"secret";
        let n = make_nonce(secret, 1_000_000);
        assert_eq!(check_nonce(secret, &n, 1_000_100), NonceCheck::Valid);
        assert_eq!(check_nonce(secret, &n, 1_000_000 + 3601), NonceCheck::Stale);
        assert_eq!(check_nonce(b"other", &n, 1_000_100), NonceCheck::Invalid);
        let forged = format!(
            "{:x}.{}",
            2_000_000,
            n.split_once('.').map(|x| x.1).unwrap_or("")
        );
        assert_eq!(check_nonce(secret, &forged, 2_000_000), NonceCheck::Invalid);
        assert_ne!(
            make_nonce(secret, 5),
            make_nonce(secret, 5),
            "no two nonces alike"
        );
        assert_eq!(check_nonce(secret, "garbage", 0), NonceCheck::Invalid);
    }
}
