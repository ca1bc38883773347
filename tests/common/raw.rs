//! Hand-written HTTP on a plain socket, for requests no well-behaved client would send: broken
//! headers, stalled bodies, odd bytes in names.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of a server base URL like `http://127.0.0.1:1234`.
pub fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

pub async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(addr(base)).await.expect("connect")
}

/// Reads what the server answers until it closes the connection or `wait` passes.
pub async fn read_response(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `request` whole and returns the answer.
pub async fn send(base: &str, request: &[u8]) -> String {
    let mut stream = connect(base).await;
    // The server may answer (and close) before reading everything; that is fine.
    let _ = stream.write_all(request).await;
    read_response(&mut stream, Duration::from_secs(30)).await
}

/// The status code of a raw response.
pub fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One part: (part name, file name, content type, bytes), raw bytes so names can be hostile.
pub type RawPart<'a> = (&'a [u8], Option<&'a [u8]>, &'a str, &'a [u8]);

/// A multipart body from parts.
pub fn multipart(boundary: &str, parts: &[RawPart<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content_type, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Disposition: form-data; name=\"");
        body.extend_from_slice(name);
        body.extend_from_slice(b"\"");
        if let Some(f) = filename {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(f);
            body.extend_from_slice(b"\"");
        }
        body.extend_from_slice(format!("\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// A complete POST of `body` as multipart to `path`.
pub fn post(path: &str, boundary: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-OpenRosa-Version: 1.0\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}
