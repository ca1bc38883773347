//! The command line (users, forms, migrations) and https with Basic authentication.

mod common;

use common::collect::Collect;
use common::*;

#[tokio::test]
async fn cli_adds_users_and_forms_that_the_running_server_serves() {
    let server = Server::start().await;
    let out = server.cli(&["migrate"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = server.cli(
        &[
            "user",
            "add",
            "--username",
            "hoa",
            "--role",
            "collector",
            "--password-stdin",
        ],
        Some("hoa-password-9\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli(
        &["user", "add", "--username", "tuan", "--role", "collector"],
        None,
    );
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let generated = printed
        .rsplit(": ")
        .next()
        .expect("password")
        .trim()
        .to_string();
    assert!(generated.len() >= 32, "{printed}");

    let form = fixture("forms/two_photos.xml");
    let form = form.to_str().expect("path");
    let out = server.cli(&["form", "add", form, "--publish"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Added form 'two_photos'"));
    let out = server.cli(&["form", "add", form], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Already present"));

    for (user, password) in [("hoa", "hoa-password-9"), ("tuan", generated.as_str())] {
        let collect = Collect::with_password(&server.base, user, password);
        let list = collect.get("/formList").await.text().await.expect("list");
        assert!(
            list.contains("<formID>two_photos</formID>"),
            "{user}: {list}"
        );
    }

    // Bad input: a clear message and a failing exit status, nothing created.
    let out = server.cli(
        &[
            "user",
            "add",
            "--username",
            "hoa",
            "--role",
            "collector",
            "--password-stdin",
        ],
        Some("another-password\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = server.cli(
        &[
            "user",
            "add",
            "--username",
            "x",
            "--role",
            "collector",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
    let out = server.cli(&["form", "add", "/nonexistent.xml"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[tokio::test]
async fn over_https_basic_auth_is_offered_and_accepted() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    let server = Server::start_with(&[
        "--tls-cert",
        cert_path.to_str().expect("path"),
        "--tls-key",
        key_path.to_str().expect("path"),
    ])
    .await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let base = server.base.replace("127.0.0.1", "localhost");
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");

    let res = http
        .get(format!("{base}/formList"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 401);
    let challenges: Vec<&str> = res
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(challenges.iter().any(|c| c.starts_with("Digest")));
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );

    let res = http
        .get(format!("{base}/formList"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    let list = res.text().await.expect("list");
    assert!(
        list.contains(&format!("<downloadUrl>{base}/forms/")),
        "https links: {list}"
    );

    let res = http
        .get(format!("{base}/formList"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 401);
}
