//! Drives a real `TestHost` over HTTP with raw reqwest calls, as a client would.

use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The body a GET of `url` answers (a direct link's bytes).
async fn get_bytes(url: &str) -> Vec<u8> {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// GET an API call with the default key plus `params`; returns the JSON reply.
async fn api(h: &TestHost, ep: &str, params: &[(&str, &str)]) -> Value {
    api_key(h, &h.key(), ep, params).await
}

async fn api_key(h: &TestHost, key: &str, ep: &str, params: &[(&str, &str)]) -> Value {
    let mut q: Vec<(&str, &str)> = vec![("key", key)];
    q.extend_from_slice(params);
    client()
        .get(format!("{}/api/{ep}", h.url()))
        .query(&q)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

async fn upload_server(h: &TestHost) -> String {
    let v = api(h, "upload/server", &[]).await;
    v["result"].as_str().expect("upload url").to_owned()
}

fn form(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> Form {
    let mut f = Form::new();
    for (k, v) in fields {
        f = f.text(k.to_string(), v.to_string());
    }
    for (name, data) in files {
        f = f.part(
            "file",
            Part::bytes(data.to_vec()).file_name(name.to_string()),
        );
    }
    f
}

async fn upload(h: &TestHost, form: Form) -> reqwest::Result<Value> {
    let url = upload_server(h).await;
    client()
        .post(url)
        .multipart(form)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

/// Uploads one small video to the root with the default key; returns its code.
async fn upload_one(h: &TestHost, name: &str, fields: &[(&str, &str)]) -> String {
    let key = h.key();
    let mut all = vec![("key", key.as_str())];
    all.extend_from_slice(fields);
    let v = upload(h, form(&all, &[(name, b"video bytes")]))
        .await
        .expect("upload");
    v["files"][0]["filecode"].as_str().expect("code").to_owned()
}

#[tokio::test]
async fn account_info_and_keys() {
    let h = TestHost::start().await.unwrap();
    assert_eq!(h.key().len(), 16);
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["status"], 200);
    assert_eq!(v["msg"], "OK");
    assert_eq!(v["result"]["login"], "demo");
    assert_eq!(v["result"]["storage_left"], "unlimited");
    assert_eq!(v["result"]["files_total"], "0");
    let t = v["server_time"].as_str().unwrap();
    assert_eq!(
        parse_datetime(t).map(|s| s.abs_diff(h.now()) < 5),
        Some(true)
    );

    let v = api_key(&h, "wrongkey12345678", "account/info", &[]).await;
    assert_eq!(v["status"], 403);
    assert_eq!(v["msg"], "Wrong auth");
    assert!(v.get("result").is_none());

    let v: Value = client()
        .get(format!("{}/api/account/info", h.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], 400);

    let v = api(&h, "account/nope", &[]).await;
    assert_eq!(
        (v["status"].clone(), v["msg"].clone()),
        (400.into(), "Invalid operation".into())
    );

    // Form-encoded POST is accepted too, and other accounts work.
    h.add_account("other", "otherkey");
    let v: Value = client()
        .post(format!("{}/api/account/info", h.url()))
        .form(&[("key", "otherkey")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["result"]["login"], "other");

    let v = api(&h, "account/stats", &[]).await;
    assert_eq!(v["msg"], "Not enough reports data");
    assert_eq!(v["result"], serde_json::json!({}));

    // Keys never reach the log.
    assert!(
        h.request_log()
            .iter()
            .all(|r| !r.endpoint.contains(&h.key()))
    );
    assert_eq!(h.request_count("account/info"), 4);
    h.shutdown().await;
}

#[tokio::test]
async fn storage_left_is_a_number_when_limited() {
    let h = TestHost::start_with(HostOptions {
        storage_left: Some(1000),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    upload_one(&h, "a.mp4", &[]).await;
    let v = api(&h, "account/info", &[]).await;
    // KB as the real host counts them: 11 bytes are 0 KB; left = quota (bytes) - KB.
    assert_eq!(v["result"]["storage_left"], 1000);
    assert_eq!(v["result"]["storage_used"], "0");
    let big = vec![0u8; 2000];
    let v = upload(&h, form(&[("key", &h.key())], &[("b.mp4", &big)]))
        .await
        .unwrap();
    assert_eq!(
        v["files"][0]["status"],
        "0:0:0:not enough disk space on your account"
    );
}

#[tokio::test]
async fn folders_create_list_edit() {
    let h = TestHost::start().await.unwrap();
    let v = api(
        &h,
        "folder/create",
        &[("name", "Movies"), ("parent_id", "0")],
    )
    .await;
    assert_eq!(v["status"], 200);
    let movies = v["result"]["fld_id"].as_str().unwrap().to_owned();
    let v = api(
        &h,
        "folder/create",
        &[("name", "Kids (old)"), ("parent_id", &movies)],
    )
    .await;
    let kids = v["result"]["fld_id"].as_str().unwrap().to_owned();

    assert_eq!(
        api(&h, "folder/create", &[("name", "a")]).await["status"],
        400
    );
    assert_eq!(
        api(&h, "folder/create", &[("name", "xx"), ("parent_id", "999")]).await["msg"],
        "Parent folder not exist or not yours"
    );
    let theirs = h.create_folder_for("other", 0, "Theirs");
    assert_eq!(
        api(
            &h,
            "folder/create",
            &[("name", "xx"), ("parent_id", &theirs.to_string())]
        )
        .await["status"],
        403
    );

    let v = api(&h, "folder/list", &[]).await;
    let folders = v["result"]["folders"].as_array().unwrap();
    assert_eq!(folders.len(), 1);
    assert_eq!(folders[0]["name"], "Movies");
    assert_eq!(folders[0]["code"].as_str().unwrap().len(), 10);
    assert!(v["result"].get("files").is_none());
    let v = api(&h, "folder/list", &[("fld_id", &movies), ("files", "1")]).await;
    assert_eq!(v["result"]["folders"][0]["name"], "Kids &#40;old&#41;");
    assert_eq!(v["result"]["files"], serde_json::json!([]));

    // Rename and move; a folder cannot be its own parent (deeper cycles pass, as on the real host).
    let v = api(
        &h,
        "folder/edit",
        &[("fld_id", &kids), ("name", "Kids"), ("parent_id", "0")],
    )
    .await;
    assert_eq!(v["result"], "true");
    let v = api(
        &h,
        "folder/edit",
        &[("fld_id", &movies), ("parent_id", &kids)],
    )
    .await;
    assert_eq!(v["result"], "true");
    let v = api(
        &h,
        "folder/edit",
        &[("fld_id", &kids), ("parent_id", &kids)],
    )
    .await;
    assert_eq!(v["status"], 400);
    let f = h.folders();
    let kids_f = f.iter().find(|f| f.fld_id.to_string() == kids).unwrap();
    assert_eq!((kids_f.name.as_str(), kids_f.parent), ("Kids", 0));
    assert_eq!(kids_f.owner, "demo");
}

#[tokio::test]
async fn upload_two_files_then_list_and_info() {
    let h = TestHost::start().await.unwrap();
    let fld = h.create_folder(0, "Shows");
    let u1 = upload_server(&h).await;
    let u2 = upload_server(&h).await;
    assert_eq!(u1, format!("{}/upload/01", h.upload_url()));
    assert_eq!(u2, format!("{}/upload/02", h.upload_url()));
    assert_ne!(h.upload_url(), h.url());

    let key = h.key();
    let fld_s = fld.to_string();
    let v = upload(
        &h,
        form(
            &[
                ("key", &key),
                ("file_title", "Hola (1)"),
                ("fld_id", &fld_s),
                ("file_public", "1"),
            ],
            &[("1.avi", b"first"), ("2.txt", b"second")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(v["msg"], "OK");
    assert_eq!(v["status"], 200);
    assert!(v.get("result").is_none() && v.get("server_time").is_none());
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let code = files[0]["filecode"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 12);
    assert!(
        code.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    assert_eq!(files[0]["filename"], "1.avi");
    assert_eq!(files[0]["status"], "OK");
    assert_eq!(files[1]["filecode"], "");
    assert_eq!(files[1]["status"], "Not video file (2.txt)");

    assert_eq!(h.file_bytes(&code).unwrap(), b"first");
    let f = h.file(&code).unwrap();
    assert_eq!(f.title, "Hola (1)");
    assert_eq!((f.fld_id, f.size, f.public), (fld, 5, true));
    assert_eq!(f.owner.as_deref(), Some("demo"));
    assert_eq!(h.files().len(), 1);
    assert_eq!(h.uploads_started(), 1);
    assert_eq!(h.request_count("upload"), 1);
    let log = h.upload_log();
    assert_eq!(
        log[0].parts,
        ["key", "file_title", "fld_id", "file_public", "file", "file"]
    );
    assert_eq!(log[0].filenames, ["1.avi", "2.txt"]);
    assert_eq!(log[0].codes, vec![code.clone()]);

    let other = upload_one(&h, "Other Show.mkv", &[]).await;
    assert_eq!(h.file(&other).unwrap().title, "Other Show");

    let v = api(&h, "file/list", &[("fld_id", &fld_s)]).await;
    let r = &v["result"];
    assert_eq!(r["results_total"], 1);
    assert_eq!(r["files"][0]["file_code"], code.as_str());
    // An upload title is stored (and returned) unescaped.
    assert_eq!(r["files"][0]["title"], "Hola (1)");
    assert_eq!(r["files"][0]["fld_id"], fld_s.as_str());
    assert_eq!(r["files"][0]["public"], "1");
    let v = api(&h, "file/list", &[("title", "hola (")]).await;
    assert_eq!(v["result"]["results_total"], 1);
    let v = api(&h, "file/list", &[("public", "0")]).await;
    assert_eq!(v["result"]["files"][0]["file_code"], other.as_str());

    let codes = format!("{code},zzzzzzzzzzzz");
    let v = api(&h, "file/info", &[("file_code", &codes)]).await;
    let r = v["result"].as_array().unwrap();
    assert_eq!(r[0]["status"], 200);
    assert_eq!(r[0]["file_title"], "Hola (1)");
    assert_eq!(r[0]["file_fld_id"], fld_s.as_str());
    assert_eq!(
        r[1],
        serde_json::json!({"status": 404, "file_code": "zzzzzzzzzzzz"})
    );
    let many = vec!["aaaaaaaaaaaa"; 51].join(",");
    let v = api(&h, "file/info", &[("file_code", &many)]).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn wrong_key_upload_is_stored_without_owner_and_chunked_bodies_work() {
    let h = TestHost::start().await.unwrap();
    let url = upload_server(&h).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![1u8; 10_000]),
        Ok(vec![2u8; 10_000]),
        Ok(vec![3u8; 5]),
    ];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let form = Form::new()
        .text("key", "not-a-key")
        .part("file", Part::stream(body).file_name("clip.webm"));
    let v: Value = client()
        .post(url)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["files"][0]["status"], "OK");
    let code = v["files"][0]["filecode"].as_str().unwrap();
    let f = h.file(code).unwrap();
    assert_eq!((f.owner, f.size), (None, 20_005));
    assert_eq!(h.file_bytes(code).unwrap().len(), 20_005);
    // Invisible to the account.
    let v = api(&h, "file/list", &[]).await;
    assert_eq!(v["result"]["results_total"], 0);
}

#[tokio::test]
async fn list_paging_and_created_filter() {
    let h = TestHost::start().await.unwrap();
    let mut codes = Vec::new();
    for i in 0..5 {
        codes.push(upload_one(&h, &format!("v{i}.mp4"), &[]).await);
    }
    let v = api(&h, "file/list", &[("per_page", "2"), ("page", "1")]).await;
    let r = &v["result"];
    assert_eq!(
        (
            r["results_total"].clone(),
            r["pages"].clone(),
            r["results"].clone()
        ),
        (5.into(), 3.into(), 2.into())
    );
    // Newest first.
    assert_eq!(r["files"][0]["file_code"], codes[4].as_str());
    let v = api(&h, "file/list", &[("per_page", "2"), ("page", "3")]).await;
    assert_eq!(v["result"]["files"][0]["file_code"], codes[0].as_str());
    assert_eq!(v["result"]["results"], 1);

    h.advance(Duration::from_secs(3600));
    let late = upload_one(&h, "late.mp4", &[]).await;
    let v = api(&h, "file/list", &[("created", "10")]).await;
    assert_eq!(v["result"]["results_total"], 1);
    assert_eq!(v["result"]["files"][0]["file_code"], late.as_str());
    let since = format_datetime(h.now() - 1800);
    let v = api(&h, "file/list", &[("created", &since)]).await;
    assert_eq!(v["result"]["results_total"], 1);
    // A value of neither form is ignored.
    let v = api(&h, "file/list", &[("created", "last week")]).await;
    assert_eq!(v["result"]["results_total"], 6);
}

#[tokio::test]
async fn file_edit_quirks_and_moves() {
    let h = TestHost::start().await.unwrap();
    let code = upload_one(&h, "a.mp4", &[("tags", "x")]).await;
    let fld = h.create_folder(0, "Dest").to_string();
    let v = api(
        &h,
        "file/edit",
        &[("file_code", "nonexistent1"), ("file_title", "T")],
    )
    .await;
    assert_eq!(v["result"], "true");
    let v = api(
        &h,
        "file/edit",
        &[
            ("file_code", &code),
            ("file_title", "New <b>"),
            ("file_fld_id", &fld),
        ],
    )
    .await;
    assert_eq!(v["result"], "true");
    let f = h.file(&code).unwrap();
    assert_eq!(
        (f.title.as_str(), f.fld_id.to_string(), f.tags.is_empty()),
        ("New &lt;b&gt;", fld, true)
    );
    let v = api(&h, "file/info", &[("file_code", &code)]).await;
    assert_eq!(v["result"][0]["file_title"], "New &lt;b&gt;");
}

#[tokio::test]
async fn encoding_progresses_with_the_clock() {
    let h = TestHost::start_with(HostOptions {
        encode_time: Duration::from_secs(100),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let code = upload_one(&h, "a.mp4", &[("file_title", "T")]).await;
    let enc = |v: &Value| v["result"][0].clone();
    let v = api(&h, "file/encodings", &[]).await;
    assert_eq!(enc(&v)["status"], "PENDING");
    assert_eq!(enc(&v)["progress"], 0);
    assert_eq!(
        api(&h, "file/info", &[("file_code", &code)]).await["result"][0]["canplay"],
        0
    );
    h.advance(Duration::from_secs(50));
    let v = api(&h, "file/encodings", &[("file_code", &code)]).await;
    assert_eq!(enc(&v)["status"], "ENCODING");
    let p = enc(&v)["progress"].as_u64().unwrap();
    assert!((49..=51).contains(&p), "{p}");
    h.advance(Duration::from_secs(51));
    let v = api(&h, "file/encodings", &[]).await;
    assert_eq!(v["result"], serde_json::json!([]));
    assert_eq!(
        api(&h, "file/info", &[("file_code", &code)]).await["result"][0]["canplay"],
        1
    );

    let stuck = upload_one(&h, "b.mp4", &[]).await;
    h.set_stuck(&stuck);
    h.advance(Duration::from_secs(500));
    let v = api(&h, "file/encodings", &[]).await;
    assert_eq!(enc(&v)["status"], "STUCK");
    h.finish_encoding(&stuck);
    assert!(h.file(&stuck).unwrap().canplay);
}

#[tokio::test]
async fn deleted_and_dmca_windows() {
    let h = TestHost::start().await.unwrap();
    let a = upload_one(&h, "a.mp4", &[("file_title", "Gone (a)")]).await;
    let b = upload_one(&h, "b.mp4", &[]).await;
    assert!(h.delete_file(&a, DeletedBy::Me));
    h.advance(Duration::from_secs(40));
    let v = api(&h, "file/deleted", &[("last", "1")]).await;
    let r = &v["result"][0];
    assert_eq!(r["file_code"], a.as_str());
    assert_eq!(r["deleted_by"], "me");
    assert_eq!(r["deleted_ago_sec"], "40");
    assert_eq!(r["title"], "Gone (a)");
    assert_eq!(
        api(&h, "file/info", &[("file_code", &a)]).await["result"][0]["status"],
        404
    );

    assert!(h.schedule_dmca(&b, Duration::from_secs(3600)));
    let v = api(&h, "file/dmca", &[("last", "24")]).await;
    assert_eq!(v["result"][0]["file_code"], b.as_str());
    assert_eq!(v["result"][0]["del_in_sec"], "3600");
    assert_eq!(
        api(&h, "file/info", &[("file_code", &b)]).await["result"][0]["status"],
        451
    );

    h.advance(Duration::from_secs(2 * 3600));
    let v = api(&h, "file/deleted", &[("last", "1")]).await;
    let r = v["result"].as_array().unwrap();
    // `a` is out of the 1-hour window; `b` was deleted by admin an hour ago.
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["file_code"], b.as_str());
    assert_eq!(r[0]["deleted_by"], "admin");
    let v = api(&h, "file/deleted", &[("last", "24")]).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 2);
    assert_eq!(
        api(&h, "file/dmca", &[]).await["result"],
        serde_json::json!([])
    );
    assert_eq!(
        h.file(&b).unwrap().deleted.map(|d| d.1),
        Some(DeletedBy::Admin)
    );
}

#[tokio::test]
async fn alt_list_paths() {
    let h = TestHost::start_with(HostOptions {
        alt_list_paths: true,
        ..HostOptions::default()
    })
    .await
    .unwrap();
    for ep in ["file/deleted", "file/dmca"] {
        let v = api(&h, ep, &[]).await;
        assert_eq!(
            (v["status"].clone(), v["msg"].clone()),
            (400.into(), "Invalid operation".into())
        );
    }
    for ep in ["files/deleted", "files/dmca"] {
        assert_eq!(api(&h, ep, &[]).await["result"], serde_json::json!([]));
    }
    h.set_alt_list_paths(false);
    assert_eq!(api(&h, "file/deleted", &[]).await["status"], 200);
    assert_eq!(api(&h, "files/deleted", &[]).await["status"], 400);
}

#[tokio::test]
async fn clone_direct_link_and_upload_url() {
    let h = TestHost::start_with(HostOptions {
        encode_time: Duration::ZERO,
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let code = upload_one(&h, "a.mp4", &[]).await;
    let v = api(
        &h,
        "file/clone",
        &[("file_code", &code), ("file_title", "Copy")],
    )
    .await;
    let copy = v["result"]["filecode"].as_str().unwrap().to_owned();
    assert_ne!(copy, code);
    assert_eq!(h.file_bytes(&copy).unwrap(), b"video bytes");
    assert_eq!(h.file(&copy).unwrap().title, "Copy");

    let v = api(&h, "file/direct_link", &[("file_code", &code)]).await;
    let url = v["result"]["versions"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(v["result"]["versions"][0]["size"], "11");
    let body = get_bytes(&url).await;
    assert_eq!(&body[..], b"video bytes");
    let v = api(&h, "file/direct_link", &[("file_code", &code), ("q", "n")]).await;
    assert!(
        v["result"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );

    let v = api(
        &h,
        "upload/url",
        &[("url", "https://example.com/media/My%20Clip.mp4")],
    )
    .await;
    let c = v["result"]["filecode"].as_str().unwrap();
    assert!(h.file(c).is_none(), "not fetched yet");
    h.finish_url_uploads();
    assert_eq!(h.file(c).unwrap().title, "My Clip");
    // The real host validates nothing, but refuses a URL already queued.
    assert_eq!(
        api(&h, "upload/url", &[("url", "ftp://x/y")]).await["status"],
        200
    );
    assert_eq!(
        api(&h, "upload/url", &[("url", "ftp://x/y")]).await["status"],
        400
    );

    let v = api(&h, "account/stats", &[("last", "3")]).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn upload_size_limit() {
    let h = TestHost::start_with(HostOptions {
        max_file_size: Some(100),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let big = vec![7u8; 101];
    let small = vec![7u8; 100];
    let v = upload(
        &h,
        form(
            &[("key", &h.key())],
            &[("big.mp4", &big), ("ok.mp4", &small)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(v["files"][0]["status"], "0:0:0:file is too big");
    assert_eq!(v["files"][1]["status"], "OK");
    assert_eq!(h.files().len(), 1);
    // No temporary files left behind.
    let leftovers = std::fs::read_dir(h.data_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .unwrap_or(false)
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn proxy_faults_and_non_json() {
    let h = TestHost::start().await.unwrap();
    let get = |ep: &'static str| {
        let url = format!("{}/api/{ep}?key={}", h.url(), h.key());
        async move { client().get(url).send().await.unwrap() }
    };
    for (fault, code) in [
        (Fault::Http502, 502),
        (Fault::Http503, 503),
        (Fault::Http429, 429),
    ] {
        h.faults().times(fault, Scope::Api, 1);
        let r = get("account/info").await;
        assert_eq!(r.status().as_u16(), code);
        assert!(r.text().await.unwrap().contains("<html>"));
    }
    assert_eq!(get("account/info").await.status(), 200);

    h.faults()
        .times(Fault::NotJson, Scope::endpoint("file/list"), 1);
    let r = get("account/info").await;
    assert!(r.json::<Value>().await.is_ok());
    let r = get("file/list").await;
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());

    h.faults().always(Fault::StatusAsString, Scope::Api);
    assert_eq!(api(&h, "account/info", &[]).await["status"], "200");
    assert_eq!(
        api_key(&h, "bad", "account/info", &[]).await["status"],
        "403"
    );
    h.faults().clear();
    assert_eq!(api(&h, "account/info", &[]).await["status"], 200);

    h.faults().times(Fault::RateLimited, Scope::Api, 1);
    let v = api(&h, "file/list", &[]).await;
    assert_eq!(v["status"], 403);
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .starts_with("Requests limit reached")
    );

    h.faults().times(Fault::NoServers, Scope::Api, 1);
    let v = api(&h, "upload/server", &[]).await;
    assert_eq!(
        (v["status"].clone(), v["msg"].clone()),
        (200.into(), "No servers available for uploads".into())
    );
    assert_eq!(v["result"], serde_json::json!({}));
    assert!(api(&h, "upload/server", &[]).await["result"].is_string());

    // 502 before an upload body is read.
    h.faults().times(Fault::Http502, Scope::Upload, 1);
    let err = upload(&h, form(&[("key", &h.key())], &[("a.mp4", b"x")])).await;
    assert!(err.is_err());
    assert!(h.files().is_empty());
    let statuses: Vec<u16> = h.request_log().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&502) && statuses.contains(&429));
}

#[tokio::test]
async fn real_rate_limit_per_minute() {
    let h = TestHost::start_with(HostOptions {
        rate_limit_per_min: Some(3),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(api(&h, "account/info", &[]).await["status"], 200);
    }
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(
        (v["status"].clone(), v["msg"].clone()),
        (403.into(), "Requests limit reached: 3 per min".into())
    );
    h.advance(Duration::from_secs(60));
    assert_eq!(api(&h, "account/info", &[]).await["status"], 200);
}

#[tokio::test]
async fn per_file_rejections() {
    let h = TestHost::start().await.unwrap();
    h.faults()
        .times(Fault::too_many_last_24h(), Scope::Upload, 1);
    h.faults()
        .times(Fault::RejectFile("custom".into()), Scope::Upload, 1);
    let v = upload(
        &h,
        form(
            &[("key", &h.key())],
            &[("a.mp4", b"1"), ("b.mp4", b"2"), ("c.mp4", b"3")],
        ),
    )
    .await
    .unwrap();
    let st: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        st,
        ["0:0:0:too many files uploaded last 24h", "custom", "OK"]
    );
    h.faults()
        .times(Fault::unallowed_extension(), Scope::Upload, 1);
    let v = upload(&h, form(&[("key", &h.key())], &[("a.mp4", b"1")]))
        .await
        .unwrap();
    assert_eq!(v["files"][0]["status"], "0:0:0:unallowed video extension");
    assert_eq!(h.files().len(), 1);
}

#[tokio::test]
async fn dropped_connection_mid_upload_stores_nothing() {
    let h = TestHost::start().await.unwrap();
    h.faults().times(Fault::DropMidUpload, Scope::Upload, 1);
    let big = vec![5u8; 512 * 1024];
    let err = upload(&h, form(&[("key", &h.key())], &[("a.mp4", &big)])).await;
    assert!(err.is_err(), "{err:?}");
    // A small body is cut too (after it was read), still without storing.
    h.faults().times(Fault::DropMidUpload, Scope::Upload, 1);
    let err = upload(&h, form(&[("key", &h.key())], &[("a.mp4", b"tiny")])).await;
    assert!(err.is_err(), "{err:?}");
    assert!(h.files().is_empty());
    assert_eq!(h.uploads_started(), 2);
    // The cut handler's temporary file is removed once its connection is gone.
    let mut tmp_left = usize::MAX;
    for _ in 0..20 {
        tmp_left = std::fs::read_dir(h.data_dir()).unwrap().count();
        if tmp_left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(tmp_left, 0);
    assert_eq!(
        h.request_log()
            .iter()
            .filter(|r| r.endpoint == "upload" && r.status == 0)
            .count(),
        2
    );
    // The next upload goes through.
    upload_one(&h, "a.mp4", &[]).await;
    assert_eq!(h.files().len(), 1);
}

#[tokio::test]
async fn lost_reply_stores_the_file() {
    let h = TestHost::start().await.unwrap();
    h.faults().times(Fault::LoseReply, Scope::Upload, 1);
    let data = vec![9u8; 100 * 1024];
    let err = upload(
        &h,
        form(
            &[("key", &h.key()), ("file_title", "Lost")],
            &[("a.mp4", &data)],
        ),
    )
    .await;
    assert!(err.is_err(), "{err:?}");
    let files = h.files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].title, "Lost");
    assert_eq!(files[0].size, 100 * 1024);
    // The client can find it by title.
    let v = api(&h, "file/list", &[("title", "lost"), ("created", "5")]).await;
    assert_eq!(v["result"]["files"][0]["file_code"], files[0].code.as_str());
}

#[tokio::test]
async fn slow_reads_and_status_string_on_upload() {
    let h = TestHost::start().await.unwrap();
    h.faults().times(
        Fault::SlowRead {
            bytes_per_sec: 200_000,
        },
        Scope::Upload,
        1,
    );
    h.faults().times(Fault::StatusAsString, Scope::Upload, 1);
    let data = vec![1u8; 20_000];
    let t = Instant::now();
    let v = upload(&h, form(&[("key", &h.key())], &[("a.mp4", &data)]))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(v["status"], "200");
    assert_eq!(v["files"][0]["status"], "OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_on_multi_thread_runtime() {
    let h = std::sync::Arc::new(TestHost::start().await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            upload_one(&h, &format!("f{i}.mp4"), &[]).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(h.files().len(), 8);
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["result"]["files_total"], "8");
}

#[tokio::test]
async fn scope_all_reaches_uploads_and_probability_is_seeded() {
    let h = TestHost::start().await.unwrap();
    h.faults().times(Fault::Http503, Scope::All, 1);
    // The first request (upload/server) takes the fault.
    let r = client()
        .get(format!("{}/api/upload/server?key={}", h.url(), h.key()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    h.faults().always(Fault::Http503, Scope::Upload);
    assert!(
        upload(&h, form(&[("key", &h.key())], &[("a.mp4", b"x")]))
            .await
            .is_err()
    );
    h.faults().clear();
    h.faults()
        .probability(Fault::Http502, Scope::endpoint("account/info"), 0.5);
    let mut bad = 0;
    for _ in 0..20 {
        let r = client()
            .get(format!("{}/api/account/info?key={}", h.url(), h.key()))
            .send()
            .await
            .unwrap();
        if r.status() == 502 {
            bad += 1;
        }
    }
    assert!((1..20).contains(&bad), "{bad}");
    assert_eq!(h.faults().rules().len(), 1);
}

#[tokio::test]
async fn reply_shapes_are_exact() {
    let h = TestHost::start().await.unwrap();
    let text = client()
        .get(format!("{}/api/account/info?key=nope", h.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with(r#"{"msg":"Wrong auth","server_time":""#),
        "{text}"
    );
    assert!(text.ends_with(r#"","status":403}"#), "{text}");
    let url = upload_server(&h).await;
    let text = client()
        .post(url)
        .multipart(form(
            &[("key", &h.key())],
            &[("a.mp4", b"x"), ("b.exe", b"y")],
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = &h.files()[0].code;
    assert_eq!(
        text,
        format!(
            r#"{{"msg": "OK", "status": 200, "files": [ {{ "filecode":"{code}", "filename": "a.mp4", "status": "OK" }}, {{ "filecode":"", "filename": "b.exe", "status": "Not video file (b.exe)" }} ]}}"#
        )
    );
}

#[tokio::test]
async fn large_chunked_upload_is_streamed_to_disk() {
    let h = TestHost::start().await.unwrap();
    let url = upload_server(&h).await;
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 32; // 8 MiB
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(|i| Ok::<_, std::io::Error>(vec![i as u8; CHUNK])),
    );
    let form = Form::new()
        .text("key", h.key())
        .text("file_title", "Big")
        .part(
            "file",
            Part::stream(reqwest::Body::wrap_stream(stream)).file_name("big.mkv"),
        );
    let v: Value = client()
        .post(url)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = v["files"][0]["filecode"].as_str().unwrap();
    assert_eq!(h.file(code).unwrap().size, (CHUNK * CHUNKS) as u64);
    let path = h.file_path(code).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        (CHUNK * CHUNKS) as u64
    );
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes
            .chunks(CHUNK)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == i as u8))
    );
}

#[tokio::test]
async fn delay_and_json_error_faults() {
    let h = TestHost::start().await.unwrap();
    h.faults().times(
        Fault::JsonError {
            status: 403,
            msg: "API not enabled for your account".into(),
        },
        Scope::endpoint("account/info"),
        1,
    );
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["status"], 403);
    assert_eq!(v["msg"], "API not enabled for your account");
    assert_eq!(api(&h, "account/info", &[]).await["status"], 200);

    h.faults()
        .times(Fault::Delay(Duration::from_millis(300)), Scope::Api, 1);
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let r = quick
        .get(format!("{}/api/account/info?key={}", h.url(), h.key()))
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()));
    assert_eq!(api(&h, "account/info", &[]).await["status"], 200);
}

#[tokio::test]
async fn fields_after_the_file_do_not_apply_to_it() {
    let h = TestHost::start().await.unwrap();
    let key = h.key();
    let folder = h.create_folder(0, "Target");
    let fld = folder.to_string();
    // The file first, then key, title and folder: as a real host reads the
    // body in order, the file gets none of them.
    let late = Form::new()
        .part(
            "file",
            Part::bytes(b"late fields".to_vec()).file_name("late.mp4"),
        )
        .text("key", key.clone())
        .text("file_title", "Late title")
        .text("fld_id", fld.clone());
    let v = upload(&h, late).await.unwrap();
    let code = v["files"][0]["filecode"].as_str().unwrap();
    let f = h.file(code).unwrap();
    assert_eq!((f.owner, f.title.as_str(), f.fld_id), (None, "late", 0));
    // In order, they all apply.
    let v = upload(
        &h,
        form(
            &[("key", &key), ("file_title", "On time"), ("fld_id", &fld)],
            &[("ontime.mp4", b"on time")],
        ),
    )
    .await
    .unwrap();
    let f = h.file(v["files"][0]["filecode"].as_str().unwrap()).unwrap();
    assert_eq!(
        (f.owner.as_deref(), f.title.as_str(), f.fld_id),
        (Some("demo"), "On time", folder)
    );
}

// ---- One test per fact of "What the server software really does" ----

#[tokio::test]
async fn upload_titles_are_rewritten_and_show_name_tagged() {
    let h = TestHost::start().await.unwrap();
    let code = upload_one(
        &h,
        "Show.Name.S01E02_1080p.x264.WEB.mkv",
        &[("tags", "Drama, tv")],
    )
    .await;
    let f = h.file(&code).unwrap();
    assert_eq!(f.title, "Show Name S01E02 1080p WEB");
    assert_eq!(
        f.title,
        host_title("Show.Name.S01E02_1080p.x264.WEB.mkv", false)
    );
    assert_eq!(*f.tags, ["drama", "show name"]);
    let v = api(&h, "file/info", &[("file_code", &code)]).await;
    assert_eq!(v["result"][0]["tags"], "drama, show name");
    let code = upload_one(&h, "x.mp4", &[("file_title", "My_Title.AVI")]).await;
    assert_eq!(h.file(&code).unwrap().title, "My Title");
    // With sanitize_filename the spaces made before become `_`.
    h.configure(|o| o.sanitize_filename = true);
    let code = upload_one(&h, "Über (1).mp4", &[]).await;
    assert_eq!(h.file(&code).unwrap().title, "_ber_1_");
    assert_eq!(host_title("a b.c", true), "a_b_c");
}

#[tokio::test]
async fn file_edit_wipes_tags_and_skips_unsafe_fields() {
    let h = TestHost::start().await.unwrap();
    let code = upload_one(&h, "a.mp4", &[("tags", "one,two")]).await;
    assert!(h.set_tags(&code, &["Hand", "Made"]));
    assert_eq!(h.file(&code).unwrap().tags, "hand,made");
    // No tags sent: the file has none afterwards.
    let v = api(
        &h,
        "file/edit",
        &[("file_code", &code), ("file_public", "1")],
    )
    .await;
    assert_eq!(v["result"], "true");
    assert!(h.file(&code).unwrap().tags.is_empty());
    let v = api(
        &h,
        "file/edit",
        &[("file_code", &code), ("tags", "red, green")],
    )
    .await;
    assert_eq!(v["result"], "true");
    assert_eq!(h.file(&code).unwrap().tags, "red,green");
    // A field with `"` is skipped silently (cat_id here); the rest applies.
    let v = api(
        &h,
        "file/edit",
        &[
            ("file_code", &code),
            ("cat_id", "5\""),
            ("file_descr", "ok"),
            ("tags", "red"),
        ],
    )
    .await;
    assert_eq!(v["result"], "true");
    let f = h.file(&code).unwrap();
    assert_eq!((f.cat_id, f.descr.as_str()), (0, "ok"));
    // `<br>` survives the escaping and so makes the title unusable: skipped.
    api(
        &h,
        "file/edit",
        &[("file_code", &code), ("file_title", "a<br>b")],
    )
    .await;
    assert_eq!(h.file(&code).unwrap().title, "a");
    let v = api(
        &h,
        "file/edit",
        &[("file_code", "nonexistent1"), ("tags", "x")],
    )
    .await;
    assert_eq!(v["result"], "true");
}

#[tokio::test]
async fn file_list_pages_use_the_cached_total() {
    let h = TestHost::start().await.unwrap();
    for i in 0..3 {
        upload_one(&h, &format!("v{i}.mp4"), &[]).await;
    }
    let v = api(&h, "file/list", &[("per_page", "2")]).await;
    assert_eq!(v["result"]["results_total"], 3);
    assert_eq!(v["result"]["pages"], 2); // int(0.990 + 3/2)
    let v = api(&h, "file/list", &[("per_page", "2"), ("page", "2")]).await;
    assert_eq!(v["result"]["pages"], 3); // int(0.990 + 3/1): the last page inflates it
    upload_one(&h, "v3.mp4", &[]).await;
    // The count is cached for 60 s: still 3 although 4 files are listed.
    let v = api(&h, "file/list", &[("per_page", "10")]).await;
    assert_eq!(v["result"]["results"], 4);
    let v = api(&h, "file/list", &[("per_page", "2")]).await;
    assert_eq!(v["result"]["results_total"], 3);
    h.advance(Duration::from_secs(61));
    let v = api(&h, "file/list", &[("per_page", "2")]).await;
    assert_eq!(v["result"]["results_total"], 4);
    assert_eq!(v["result"]["pages"], 2);
    // Title: a LIKE substring, case-insensitive; ignored with `"`.
    let v = api(&h, "file/list", &[("title", "V_")]).await;
    assert_eq!(v["result"]["results"], 4);
    let v = api(&h, "file/list", &[("title", "v1\"")]).await;
    assert_eq!(v["result"]["results"], 4);
    let v = api(&h, "file/list", &[("title", "v1")]).await;
    assert_eq!(v["result"]["results"], 1);
    assert!(v["result"]["files"][0].get("size").is_none());
    // Empty page: pages 0.
    let v = api(&h, "file/list", &[("page", "9")]).await;
    assert_eq!(v["result"]["pages"], 0);
}

#[tokio::test]
async fn file_info_has_no_owner_filter_and_answers_451() {
    let h = TestHost::start().await.unwrap();
    h.add_account("other", "otherkey00000000");
    let code = upload_one(&h, "a.mp4", &[]).await;
    let v = api_key(&h, "otherkey00000000", "file/info", &[("file_code", &code)]).await;
    assert_eq!(v["result"][0]["status"], 200);
    assert!(v["result"][0].get("file_size").is_none());
    h.schedule_dmca(&code, Duration::from_secs(10));
    let v = api(&h, "file/info", &[("file_code", &code)]).await;
    assert_eq!(v["result"][0]["status"], 451);
    // Overdue: the host's job runs later; del_in_sec goes negative.
    h.advance(Duration::from_secs(30));
    let v = api(&h, "file/dmca", &[]).await;
    let due: i64 = v["result"][0]["del_in_sec"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(due < 0, "{due}");
    let v = api(&h, "file/info", &[("file_code", "bad,also-bad")]).await;
    assert_eq!(v["status"], 400);
}

#[tokio::test]
async fn account_quota_goes_negative_and_refuses_uploads_prefixed() {
    let h = TestHost::start_with(HostOptions {
        storage_quota: Some(10 * 1024),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["result"]["storage_left"], 10 * 1024);
    upload_one(&h, "a.mp4", &[]).await;
    let eight = vec![1u8; 8 * 1024];
    let v = upload(&h, form(&[("key", &h.key())], &[("b.mp4", &eight)]))
        .await
        .unwrap();
    assert_eq!(v["files"][0]["status"], "OK");
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["result"]["storage_used"], "8");
    assert_eq!(v["result"]["storage_left"], 10 * 1024 - 8);
    let v = upload(&h, form(&[("key", &h.key())], &[("c.mp4", &eight)]))
        .await
        .unwrap();
    assert_eq!(
        v["files"][0]["status"],
        "0:0:0:not enough disk space on your account"
    );
    // An account already over quota: negative left.
    h.configure(|o| {
        o.storage_quota = None;
        o.storage_left = Some(-5);
    });
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["result"]["storage_left"], -13);
}

#[tokio::test]
async fn rate_limits_count_calendar_minutes_and_days() {
    let h = TestHost::start_with(HostOptions {
        rate_limit_per_min: Some(2),
        rate_limit_per_day: Some(4),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    // Start at the beginning of a calendar minute (host clock).
    h.advance(Duration::from_secs(60 - h.now() % 60));
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["requests_available"], 1);
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["requests_available"], 0);
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(
        (v["status"].clone(), v["msg"].clone()),
        (403.into(), "Requests limit reached: 2 per min".into())
    );
    h.advance(Duration::from_secs(60));
    // The refused call counted for the day: 3 used, one left today.
    assert_eq!(api(&h, "account/info", &[]).await["status"], 200);
    let v = api(&h, "account/info", &[]).await;
    assert_eq!(v["msg"], "Requests limit reached: 4 per day");
}

#[tokio::test]
async fn foreign_or_missing_folders_answer_403() {
    let h = TestHost::start().await.unwrap();
    let theirs = h.create_folder_for("other", 0, "Theirs").to_string();
    for (ep, p) in [
        ("folder/list", "fld_id"),
        ("folder/edit", "fld_id"),
        ("folder/create", "parent_id"),
    ] {
        for id in [theirs.as_str(), "999"] {
            let v = api(&h, ep, &[(p, id), ("name", "New")]).await;
            assert_eq!(v["status"], 403, "{ep} {id}");
        }
    }
    let v = api(&h, "folder/list", &[("fld_id", "999")]).await;
    assert_eq!(v["msg"], "Folder not exist or not yours");
    let v = api(&h, "folder/create", &[("name", r"A\B (x)")]).await;
    let id: u64 = v["result"]["fld_id"].as_str().unwrap().parse().unwrap();
    let f = h.folders().into_iter().find(|f| f.fld_id == id).unwrap();
    assert_eq!(f.name, r"A\\B &#40;x&#41;");
}

#[tokio::test]
async fn direct_link_versions_uploading_and_disabled() {
    let h = TestHost::start_with(HostOptions {
        encode_time: Duration::ZERO,
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let code = upload_one(&h, "a.mp4", &[]).await;
    let v = api(&h, "file/direct_link", &[("file_code", &code)]).await;
    let versions = v["result"]["versions"].as_array().unwrap();
    let o = versions.iter().find(|v| v["name"] == "o").unwrap();
    assert_eq!(o["size"], "11");
    assert!(v["result"].get("hls_direct").is_none());
    let v = api(
        &h,
        "file/direct_link",
        &[("file_code", &code), ("hls", "1")],
    )
    .await;
    assert!(v["result"]["hls_direct"].is_string());
    let v = api(&h, "file/direct_link", &[("file_code", &code), ("q", "x")]).await;
    assert_eq!(v["result"], "");
    let v = api(&h, "upload/url", &[("url", "http://example.com/a.mp4")]).await;
    let queued = v["result"]["filecode"].as_str().unwrap().to_owned();
    let v = api(&h, "file/direct_link", &[("file_code", &queued)]).await;
    assert_eq!(
        (v["status"].clone(), v["msg"].clone()),
        (200.into(), "uploading".into())
    );
    assert!(v.get("result").is_none());
    h.configure(|o| {
        o.direct_link_disabled = true;
        o.clone_disabled = true;
    });
    for ep in ["file/direct_link", "file/clone"] {
        let v = api(&h, ep, &[("file_code", &code)]).await;
        assert_eq!(v["msg"], "This function not allowed in API");
    }
}

#[tokio::test]
async fn clone_takes_fld_id() {
    let h = TestHost::start().await.unwrap();
    let code = upload_one(&h, "a.mp4", &[]).await;
    let fld = h.create_folder(0, "Dest");
    let v = api(
        &h,
        "file/clone",
        &[("file_code", &code), ("fld_id", &fld.to_string())],
    )
    .await;
    let copy = v["result"]["filecode"].as_str().unwrap();
    assert_eq!(h.file(copy).unwrap().fld_id, fld);
}

#[tokio::test]
async fn deleted_lists_only_the_trash() {
    let h = TestHost::start().await.unwrap();
    let code = upload_one(&h, "a.mp4", &[]).await;
    let v = api(&h, "file/delete", &[("file_code", &code)]).await;
    assert_eq!(v["status"], 200);
    assert_eq!(
        api(&h, "file/deleted", &[]).await["result"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    h.empty_trash();
    assert_eq!(
        api(&h, "file/deleted", &[]).await["result"],
        serde_json::json!([])
    );
    assert_eq!(
        api(&h, "file/delete", &[("file_code", &code)]).await["status"],
        404
    );
    h.configure(|o| o.disabled_calls = vec!["file/delete".into()]);
    assert_eq!(
        api(&h, "file/delete", &[("file_code", &code)]).await["status"],
        403
    );
}

#[tokio::test]
async fn url_uploads_queue_and_actions() {
    let h = TestHost::start().await.unwrap();
    let v = api(
        &h,
        "upload/url",
        &[("url", "http://example.com/x.mp4"), ("tags", "web")],
    )
    .await;
    let code = v["result"]["filecode"].as_str().unwrap().to_owned();
    let v = api(&h, "file/url_uploads", &[]).await;
    assert_eq!(v["result"][0]["file_code"], code.as_str());
    assert_eq!(v["result"][0]["remote_url"], "http://example.com/x.mp4");
    assert_eq!(
        api(&h, "file/info", &[("file_code", &code)]).await["result"][0]["status"],
        404
    );
    h.advance(Duration::from_secs(3));
    assert_eq!(
        api(&h, "file/url_uploads", &[]).await["result"],
        serde_json::json!([])
    );
    let f = h.file(&code).unwrap();
    assert_eq!((f.title.as_str(), f.tags == "web"), ("x", true));
    api(&h, "upload/url", &[("url", "http://example.com/y.mp4")]).await;
    let v = api(&h, "file/url_actions", &[("delete_all", "1")]).await;
    assert_eq!(v["status"], 200);
    assert!(h.url_queue().is_empty());
}

#[tokio::test]
async fn upload_without_key_gets_html_and_malformed_reply_faults() {
    let h = TestHost::start().await.unwrap();
    let url = upload_server(&h).await;
    let text = client()
        .post(&url)
        .multipart(form(&[], &[("a.mp4", b"x")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("<HTML>"), "{text}");
    for (fault, check) in [
        (Fault::StoredThenArray, 0),
        (Fault::StoredThenHtml, 1),
        (Fault::StoredThenBadJson, 2),
        (Fault::StoredThenCut, 3),
    ] {
        let before = h.files().len();
        h.faults().times(fault.clone(), Scope::Upload, 1);
        let resp = client()
            .post(&url)
            .multipart(form(&[("key", &h.key())], &[("a.mp4", b"x")]))
            .send()
            .await
            .unwrap();
        let body = resp.text().await;
        match check {
            0 => assert!(body.unwrap().starts_with("[{")),
            1 => assert!(body.unwrap().contains("<html>")),
            2 => assert!(serde_json::from_str::<Value>(&body.unwrap()).is_err()),
            _ => assert!(body.is_err(), "{body:?}"),
        }
        assert_eq!(h.files().len(), before + 1, "{fault:?} stored the file");
        // The same on an API call.
        h.faults()
            .times(fault.clone(), Scope::endpoint("folder/list"), 1);
        let resp = client()
            .get(format!("{}/api/folder/list?key={}", h.url(), h.key()))
            .send()
            .await
            .unwrap();
        let body = resp.text().await;
        match check {
            0 => assert!(body.unwrap().starts_with("[{")),
            1 => assert!(body.unwrap().contains("<html>")),
            2 => assert!(serde_json::from_str::<Value>(&body.unwrap()).is_err()),
            _ => assert!(body.is_err(), "{body:?}"),
        }
    }
    h.faults().times(
        Fault::RejectFilePrefixed("video is too long".into()),
        Scope::Upload,
        1,
    );
    let v = upload(&h, form(&[("key", &h.key())], &[("a.mp4", b"x")]))
        .await
        .unwrap();
    assert_eq!(v["files"][0]["status"], "0:0:0:video is too long");
}

#[tokio::test]
async fn upload_host_names_the_upload_server() {
    let h = TestHost::start_with(HostOptions {
        upload_host: Some("up1.example.test".into()),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let port = h.upload_url().rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        upload_server(&h).await,
        format!("http://up1.example.test:{port}/upload/01")
    );
}

#[tokio::test]
async fn same_bytes_twice_give_two_codes_and_add_file_seeds() {
    let h = TestHost::start().await.unwrap();
    let a = upload_one(&h, "a.mp4", &[]).await;
    let b = upload_one(&h, "a.mp4", &[]).await;
    assert_ne!(a, b);
    let c = h.add_file(0, "Other.Tool.S02E03.mkv", b"seeded", &["Seed"]);
    let f = h.file(&c).unwrap();
    assert_eq!((f.title.as_str(), f.size), ("Other Tool S02E03", 6));
    assert_eq!(*f.tags, ["seed", "other tool"]);
    let v = api(&h, "file/direct_link", &[("file_code", &c)]).await;
    let o = v["result"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "o")
        .cloned()
        .unwrap();
    assert_eq!(o["size"], "6");
}

// ---- upload/url between hosts: B fetches A's direct link over loopback ----

/// `n` bytes that are not all alike, so a copy that reorders or drops a chunk shows.
fn video_bytes(n: u32) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Uploads `bytes` as `name` to the root of `h`; returns the code.
async fn upload_bytes(h: &TestHost, name: &str, bytes: &[u8]) -> String {
    let v = upload(h, form(&[("key", &h.key())], &[(name, bytes)]))
        .await
        .expect("upload");
    v["files"][0]["filecode"].as_str().expect("code").to_owned()
}

/// file/direct_link with `q` (a plain URL string).
async fn link_of(h: &TestHost, code: &str, q: &str) -> String {
    let v = api(h, "file/direct_link", &[("file_code", code), ("q", q)]).await;
    v["result"].as_str().expect("link").to_owned()
}

/// upload/url on `h`; returns the code of the file to be.
async fn upload_url(h: &TestHost, url: &str) -> String {
    let v = api(h, "upload/url", &[("url", url)]).await;
    assert_eq!(v["status"], 200, "{v}");
    v["result"]["filecode"].as_str().expect("code").to_owned()
}

/// The job `code` as file/url_uploads shows it.
async fn url_job(h: &TestHost, code: &str) -> Value {
    let v = api(h, "file/url_uploads", &[("file_code", code)]).await;
    v["result"][0].clone()
}

async fn info_status(h: &TestHost, code: &str) -> Value {
    api(h, "file/info", &[("file_code", code)]).await["result"][0]["status"].clone()
}

/// The jobs of `h` left (inspection) after ending the waits and the fetches.
async fn settle_jobs(h: &TestHost) -> Vec<UrlUpload> {
    h.finish_url_uploads();
    h.wait_url_fetches().await;
    h.url_uploads()
}

/// The one job of `h` left after ending the waits and the fetches: a failed one.
async fn failed_job(h: &TestHost) -> UrlUpload {
    let jobs = settle_jobs(h).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, UrlStatus::Error, "{jobs:?}");
    jobs[0].clone()
}

/// Ends the waits and fetches of `h`, whose jobs all succeed.
async fn all_jobs_done(h: &TestHost) {
    let jobs = settle_jobs(h).await;
    assert!(jobs.is_empty(), "{jobs:?}");
}

/// A bare loopback HTTP server: reads each request's head and writes `reply(path)`
/// as given (a reply may promise more than it sends, to cut a body short), then
/// closes the connection. A path containing "hang" gets its reply and then silence.
fn raw_server(
    listener: tokio::net::TcpListener,
    reply: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let reply = std::sync::Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let _ = s.write_all(&reply(&path)).await;
                if path.contains("hang") {
                    std::future::pending::<()>().await;
                }
                let _ = s.shutdown().await;
            });
        }
    })
}

fn reply(status: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn b_copies_a_file_from_a_direct_link_of_a() {
    let a = TestHost::start_with(HostOptions {
        encode_time: Duration::ZERO,
        seed: 1,
        ..HostOptions::default()
    })
    .await
    .unwrap();
    // Long enough that real time never ends B's wait by itself during the test.
    let b = TestHost::start_with(HostOptions {
        url_fetch_time: Duration::from_secs(600),
        seed: 2,
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let bytes = video_bytes(300_000);
    let src = upload_bytes(&a, "Road.Trip.2019.mp4", &bytes).await;
    assert_eq!(a.bytes_uploaded(), bytes.len() as u64);

    // A's link points at its storage server and names the file `v.mp4`, as the real one.
    let link = link_of(&a, &src, "o").await;
    assert!(
        link.starts_with(&format!("{}/v/01/", a.upload_url())),
        "{link}"
    );
    let parsed = url::Url::parse(&link).unwrap();
    assert_eq!(parsed.path_segments().unwrap().next_back(), Some("v.mp4"));
    assert!(parsed.query_pairs().any(|(k, v)| k == "e" && v == "21600"));

    let code = upload_url(&b, &link).await;
    b.wait_url_fetches().await;
    assert_eq!(b.bytes_fetched(), bytes.len() as u64);
    assert_eq!(a.bytes_served(), bytes.len() as u64);
    // Fetched, but B's time for the job has not come: still only in the queue.
    assert_eq!(info_status(&b, &code).await, 404);
    let v = api(&b, "file/direct_link", &[("file_code", &code)]).await;
    assert_eq!(
        (v["status"].clone(), v["msg"].clone()),
        (200.into(), "uploading".into())
    );
    let job = url_job(&b, &code).await;
    assert_eq!(job["remote_url"], link.as_str());
    assert!(
        ["PENDING", "WORKING"].contains(&job["status"].as_str().unwrap()),
        "{job}"
    );
    // The real call's five fields: no error text, no size.
    let mut keys: Vec<&str> = job
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["file_code", "fld_id", "progress", "remote_url", "status"]
    );
    assert!(b.file(&code).is_none());

    b.advance(Duration::from_secs(601));
    let v = api(&b, "file/info", &[("file_code", &code)]).await;
    assert_eq!(v["result"][0]["status"], 200);
    // Named after the link's last segment, not after A's title.
    assert_eq!(v["result"][0]["file_title"], "v");
    assert_eq!(b.file_bytes(&code).unwrap(), a.file_bytes(&src).unwrap());
    assert_eq!(b.file(&code).unwrap().size, bytes.len() as u64);
    assert_eq!(
        api(&b, "file/url_uploads", &[]).await["result"],
        serde_json::json!([])
    );

    // B serves the copy in turn; nothing was uploaded to B, nothing fetched by A.
    let from_b = link_of(&b, &code, "o").await;
    let got = get_bytes(&from_b).await;
    assert_eq!(&got[..], &bytes[..]);
    assert_eq!(b.bytes_served(), bytes.len() as u64);
    assert_eq!((b.bytes_uploaded(), a.bytes_fetched()), (0, 0));

    // A link from the versions list is named `<code>_o.mp4`: that is the title then.
    let listed = api(&a, "file/direct_link", &[("file_code", &src)]).await;
    let o = listed["result"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "o")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = upload_url(&b, &o).await;
    all_jobs_done(&b).await;
    assert_eq!(b.file(&second).unwrap().title, format!("{src} o"));
    assert_eq!(a.bytes_served(), 2 * bytes.len() as u64);
    assert_eq!(b.bytes_fetched(), 2 * bytes.len() as u64);
}

#[tokio::test]
async fn a_refused_fetch_is_an_error_until_restart_errors_retries_it() {
    let b = TestHost::start().await.unwrap();
    // A port that is bound but not listening refuses connections; it listens later.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/clip.mp4");
    let code = upload_url(&b, &url).await;

    let job = failed_job(&b).await;
    assert_eq!(job.status, UrlStatus::Error);
    assert_eq!(
        job.error.as_deref(),
        Some(
            format!(
                "File download failed:500 Can't connect to 127.0.0.1:{port} (Connection refused)"
            )
            .as_str()
        )
    );
    let v = url_job(&b, &code).await;
    assert_eq!(
        (v["status"].clone(), v["progress"].clone()),
        ("ERROR".into(), 0.into())
    );
    assert!(v.get("error").is_none());
    // The file never appears, but the code is still "uploading" to file/direct_link.
    assert_eq!(info_status(&b, &code).await, 404);
    assert_eq!(
        api(&b, "file/direct_link", &[("file_code", &code)]).await["msg"],
        "uploading"
    );
    assert!(b.file(&code).is_none());
    // The job stays, so the same URL is refused as already queued.
    assert_eq!(api(&b, "upload/url", &[("url", &url)]).await["status"], 400);

    let _server = raw_server(socket.listen(8).unwrap(), |_| {
        reply("200 OK", "video/mp4", "", b"hello")
    });
    let v = api(&b, "file/url_actions", &[("restart_errors", "1")]).await;
    assert_eq!(v["status"], 200);
    assert_eq!(url_job(&b, &code).await["status"], "PENDING");
    all_jobs_done(&b).await;
    let f = b.file(&code).expect("fetched on the second try");
    assert_eq!((f.title.as_str(), f.size), ("clip", 5));
    assert_eq!(b.file_bytes(&code).unwrap(), b"hello");
    assert_eq!(b.bytes_fetched(), 5);
    assert!(b.url_queue().is_empty());
}

#[tokio::test]
async fn fetches_that_go_wrong_end_in_error_and_never_leave_loopback() {
    let b = TestHost::start_with(HostOptions {
        max_file_size: Some(1000),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let here = base.clone();
    let _server = raw_server(listener, move |path| match path {
        "/cut.mp4" => {
            let mut r = reply("200 OK", "video/mp4", "", &[7u8; 100]);
            r.truncate(r.len() - 90);
            r
        }
        "/page.mp4" => reply("200 OK", "text/html", "", b"<html>login</html>"),
        "/gone.mp4" => reply("404 Not Found", "text/html", "", b"<html>404</html>"),
        "/notes.txt" => reply("200 OK", "text/plain", "", b"notes"),
        "/big.mp4" => reply("200 OK", "video/mp4", "", &[1u8; 1001]),
        "/away.mp4" => reply(
            "302 Found",
            "text/html",
            "Location: http://example.com/x.mp4\r\n",
            b"",
        ),
        "/here.mp4" => reply(
            "302 Found",
            "text/html",
            &format!("Location: {here}/named\r\n"),
            b"",
        ),
        "/named" => reply(
            "200 OK",
            "video/mp4",
            "Content-Disposition: attachment; filename=\"My.Show.S01E02.mkv\"\r\n",
            b"named",
        ),
        "/hang.mp4" => {
            let mut r = reply("200 OK", "video/mp4", "", &[3u8; 100]);
            r.truncate(r.len() - 90);
            r
        }
        _ => reply("404 Not Found", "text/plain", "", b""),
    });
    for (path, error) in [
        (
            "/cut.mp4",
            "File download failed:500 body cut short after 10 of 100 bytes",
        ),
        ("/page.mp4", "Received HTML page instead of file"),
        ("/gone.mp4", "File download failed:404 Not Found"),
        ("/notes.txt", "FS: Not video file (notes.txt)"),
        ("/big.mp4", "FS: file is too big"),
        // A redirect off the machine is not followed: the 302 itself is the reply.
        ("/away.mp4", "File download failed:302 Found"),
    ] {
        let code = upload_url(&b, &format!("{base}{path}")).await;
        let job = failed_job(&b).await;
        assert_eq!(
            (job.status, job.error.as_deref()),
            (UrlStatus::Error, Some(error)),
            "{path}"
        );
        assert!(b.file(&code).is_none(), "{path}");
        assert!(
            !b.data_dir().join(&code).exists(),
            "{path}: bytes left behind"
        );
        let v = api(&b, "file/url_actions", &[("delete_errors", "1")]).await;
        assert_eq!(v["status"], 200);
        assert!(b.url_queue().is_empty(), "{path}");
    }
    // A redirect on loopback is followed, and Content-Disposition names the file.
    let code = upload_url(&b, &format!("{base}/here.mp4")).await;
    all_jobs_done(&b).await;
    let f = b.file(&code).unwrap();
    assert_eq!((f.title.as_str(), f.size), ("My Show S01E02", 5));
    assert_eq!(f.tags, "my show");
    // `localhost` is pinned to 127.0.0.1, not looked up.
    let port = base.rsplit(':').next().unwrap();
    let code = upload_url(&b, &format!("http://localhost:{port}/named")).await;
    all_jobs_done(&b).await;
    assert_eq!(b.file_bytes(&code).unwrap(), b"named");

    // A job deleted while its fetch hangs: the fetch stops, the file never appears.
    let code = upload_url(&b, &format!("{base}/hang.mp4")).await;
    // Mid-fetch: 10 of the 100 bytes promised have arrived (bounded, not a sleep).
    for _ in 0..1000 {
        if b.url_uploads()[0].bytes == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let job = &b.url_uploads()[0];
    assert_eq!((job.bytes, job.status == UrlStatus::Error), (10, false));
    let v = api(&b, "file/url_actions", &[("delete_code", &code)]).await;
    assert_eq!(v["status"], 200);
    // The stopped fetch no longer counts as running.
    b.wait_url_fetches().await;
    b.finish_url_uploads();
    assert!(b.file(&code).is_none() && b.url_queue().is_empty());
    assert!(!b.data_dir().join(&code).exists());

    // A URL off the machine is never fetched: it becomes an empty file, as before.
    let code = upload_url(&b, "http://example.com/far.mp4").await;
    assert!(!b.url_uploads()[0].fetched_for_real);
    let before = b.bytes_fetched();
    all_jobs_done(&b).await;
    assert_eq!(
        (b.file(&code).unwrap().size, b.bytes_fetched()),
        (0, before)
    );
}

#[tokio::test]
async fn an_expired_direct_link_gives_an_error_on_the_fetching_host() {
    let a = TestHost::start_with(HostOptions {
        direct_link_ttl: Some(Duration::from_secs(60)),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let b = TestHost::start_with(HostOptions {
        seed: 9,
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let src = upload_bytes(&a, "a.mp4", &video_bytes(5000)).await;
    let link = link_of(&a, &src, "o").await;
    assert!(link.contains("&e=60&"), "{link}");
    // Stretching the lifetime by hand breaks the signature.
    let stretched = link.replace("&e=60&", "&e=6000&");
    assert_eq!(client().get(&stretched).send().await.unwrap().status(), 403);
    a.advance(Duration::from_secs(61));
    assert_eq!(client().get(&link).send().await.unwrap().status(), 403);
    let served = a.bytes_served();

    let code = upload_url(&b, &link).await;
    let job = failed_job(&b).await;
    assert_eq!(
        (job.status, job.error.as_deref()),
        (UrlStatus::Error, Some("File download failed:403 Forbidden"))
    );
    assert!(b.file(&code).is_none());
    assert_eq!(info_status(&b, &code).await, 404);
    // What B read is A's error page, byte for byte.
    assert!(b.bytes_fetched() > 0);
    assert_eq!(a.bytes_served() - served, b.bytes_fetched());

    // A fresh link works again.
    api(&b, "file/url_actions", &[("delete_errors", "1")]).await;
    let fresh = link_of(&a, &src, "o").await;
    let code = upload_url(&b, &fresh).await;
    all_jobs_done(&b).await;
    assert_eq!(b.file_bytes(&code).unwrap(), video_bytes(5000));
}

#[tokio::test]
async fn url_fetch_fails_fails_every_fetch_until_switched_off() {
    let a = TestHost::start().await.unwrap();
    let b = TestHost::start_with(HostOptions {
        url_fetch_fails: true,
        url_fetch_time: Duration::from_secs(600),
        seed: 3,
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let src = upload_bytes(&a, "a.mp4", b"original bytes").await;
    let near = upload_url(&b, &link_of(&a, &src, "o").await).await;
    let far = upload_url(&b, "http://example.com/far.mp4").await;
    // Until the job's time has come it looks as any other.
    assert_eq!(url_job(&b, &near).await["status"], "PENDING");
    b.finish_url_uploads();
    for code in [&near, &far] {
        assert_eq!(url_job(&b, code).await["status"], "ERROR");
        assert_eq!(info_status(&b, code).await, 404);
    }
    assert!(
        b.url_uploads()
            .iter()
            .all(|j| j.error.as_deref() == Some("File download failed:500 Internal Server Error"))
    );
    // Nothing was fetched: the remote "answered 500" without a connection.
    assert_eq!((a.bytes_served(), b.bytes_fetched()), (0, 0));

    // Restarted while the switch is on: another failure.
    api(&b, "file/url_actions", &[("restart_errors", "1")]).await;
    b.finish_url_uploads();
    assert_eq!(url_job(&b, &near).await["status"], "ERROR");

    b.configure(|o| o.url_fetch_fails = false);
    api(&b, "file/url_actions", &[("restart_errors", "1")]).await;
    all_jobs_done(&b).await;
    assert_eq!(b.file_bytes(&near).unwrap(), b"original bytes");
    assert_eq!(b.file(&far).unwrap().size, 0);

    // delete_errors removes the failed jobs; their files never appear.
    b.configure(|o| o.url_fetch_fails = true);
    let z = upload_url(&b, "http://example.com/z.mp4").await;
    b.finish_url_uploads();
    api(&b, "file/url_actions", &[("delete_errors", "1")]).await;
    assert!(b.url_queue().is_empty());
    let v = api(&b, "file/direct_link", &[("file_code", &z)]).await;
    assert_eq!(
        (v["status"].clone(), v["msg"].clone()),
        (404.into(), "no file".into())
    );
    assert!(b.file(&z).is_none());
}
