//! Tests of the files domain: generated documents read back with real
//! readers (pdftotext/pdfinfo, python-docx, the csv crate, a PNG decoder),
//! uploads, downloads, ownership, quota, SSRF, and browser recovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestUser, assert_problem, error_fields, spawn_app, spawn_app_with, wait_until,
};

const BOUNDARY: &str = "hs-test-boundary-7d1c";

fn multipart_body(file_name: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A tiny valid PNG (1x1).
fn png_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 1, 1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[10, 20, 30]).unwrap();
    }
    out
}

impl TestApp {
    pub async fn upload(
        &self,
        token: &str,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> reqwest::Response {
        self.client
            .post(self.url("/api/files"))
            .bearer_auth(token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(multipart_body(file_name, content_type, bytes))
            .send()
            .await
            .unwrap()
    }

    /// Starts a generation job and waits for it to finish.
    async fn generate(&self, token: &str, what: &str, body: Value) -> Value {
        let res = self
            .client
            .post(self.url(&format!("/api/files/generate/{what}")))
            .bearer_auth(token)
            .header("prefer", "wait=55")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let job: Value = res.json().await.unwrap();
        // `Prefer: wait` answers 200 with the finished job when it finished
        // in time, else 202 with the job still queued or running.
        let finished = matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        );
        let expected = if finished {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        assert_eq!(status, expected, "{job}");
        self.wait_job(job["id"].as_str().unwrap(), token).await
    }

    async fn download(&self, token: &str, file: &Value) -> Vec<u8> {
        let res = self
            .get(file["downloadUrl"].as_str().unwrap(), Some(token))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        res.bytes().await.unwrap().to_vec()
    }

    fn files_on_disk(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out);
                    } else {
                        out.push(p);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir().join("files"), &mut out);
        out
    }
}

fn succeeded_file(job: &Value) -> Value {
    assert_eq!(job["status"], "succeeded", "job: {job}");
    job["result"]["file"].clone()
}

fn long_document() -> Value {
    let mut sections = vec![json!({"type": "heading", "text": "Introduction", "level": 1})];
    for i in 0..60 {
        sections.push(json!({"type": "paragraph", "text": format!("Paragraph {i}: naïve café, Ελληνικά κείμενα, Übergröße. {}", "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(6))}));
    }
    sections.push(json!({"type": "list", "items": ["first", "second"], "ordered": true}));
    sections.push(json!({"type": "list", "items": ["apple", "pear"], "ordered": false}));
    sections.push(json!({"type": "table", "header": true, "rows": [["Name", "Qty"], ["Widget", 3], ["Γάμμα", 4.5]]}));
    sections.push(json!({"type": "heading", "text": "The End", "level": 2}));
    json!({
        "title": "Quarterly Report Ω",
        "metadata": {"author": "Zoë Author", "subject": "Finance", "keywords": ["report", "q3"]},
        "options": {"pageSize": "A4", "orientation": "portrait"},
        "sections": sections
    })
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed by this test: {e}"));
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_pdf_job_produces_a_multi_page_pdf_whose_unicode_text_and_metadata_are_readable() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.generate(&user.token, "pdf", long_document()).await;
    let file = succeeded_file(&job);
    assert_eq!(file["kind"], "pdf");
    assert_eq!(file["mimeType"], "application/pdf");
    assert_eq!(file["fileName"], "Quarterly Report Ω.pdf");
    assert_eq!(file["jobId"], job["id"]);
    let bytes = app.download(&user.token, &file).await;
    assert_eq!(bytes.len() as u64, file["size"].as_u64().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, &bytes).unwrap();
    let p = path.to_str().unwrap();
    let text = run("pdftotext", &["-enc", "UTF-8", p, "-"]);
    for needle in [
        "Quarterly Report Ω",
        "naïve café",
        "Ελληνικά κείμενα",
        "Übergröße",
        "Γάμμα",
        "Paragraph 59",
        "Page 1 of",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} missing from the PDF text"
        );
    }
    let info = run("pdfinfo", &["-enc", "UTF-8", p]);
    let pages: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pages >= 3, "only {pages} pages");
    assert!(text.contains(&format!("Page {pages} of {pages}")));
    assert!(info.contains("Zoë Author"), "{info}");
    assert!(info.contains("Finance"), "{info}");
    assert!(info.contains("Quarterly Report Ω"), "{info}");
}

#[tokio::test]
async fn a_docx_job_has_real_headings_numbered_lists_tables_and_properties() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.generate(&user.token, "docx", long_document()).await;
    let file = succeeded_file(&job);
    assert_eq!(
        file["mimeType"],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    let bytes = app.download(&user.token, &file).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.docx");
    std::fs::write(&path, &bytes).unwrap();
    let script = r#"
import sys, json, docx
d = docx.Document(sys.argv[1])
out = {
  "headings": [(p.style.name, p.text) for p in d.paragraphs if p.style.name.lower().startswith("heading")],
  "numbered": sum(1 for p in d.paragraphs if p._p.pPr is not None and p._p.pPr.numPr is not None),
  "tables": [[c.text for c in r.cells] for t in d.tables for r in t.rows],
  "title": d.core_properties.title, "author": d.core_properties.author,
  "subject": d.core_properties.subject, "keywords": d.core_properties.keywords,
  "text": "\n".join(p.text for p in d.paragraphs),
}
print(json.dumps(out))
"#;
    let out = run("python3", &["-c", script, path.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let headings = v["headings"].as_array().unwrap();
    assert!(
        headings.contains(&json!(["Heading 1", "Introduction"])),
        "{headings:?}"
    );
    assert!(
        headings.contains(&json!(["Heading 2", "The End"])),
        "{headings:?}"
    );
    assert_eq!(v["numbered"], 4, "list items carry w:numPr");
    assert_eq!(
        v["tables"],
        json!([["Name", "Qty"], ["Widget", "3"], ["Γάμμα", "4.5"]])
    );
    assert_eq!(v["title"], "Quarterly Report Ω");
    assert_eq!(v["author"], "Zoë Author");
    assert_eq!(v["subject"], "Finance");
    assert_eq!(v["keywords"], "report, q3");
    assert!(v["text"].as_str().unwrap().contains("naïve café, Ελληνικά"));
    assert!(
        !v["text"].as_str().unwrap().contains('•'),
        "bullets are numbering, not text"
    );
}

#[tokio::test]
async fn a_csv_job_parses_back_to_the_same_cells_with_formulas_neutralised() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app
        .generate(
            &user.token,
            "csv",
            json!({
                "columns": [{"key": "name", "title": "Name"}, {"key": "value", "title": "Value"}],
                "rows": [
                    {"name": "plain, with comma", "value": 1.5},
                    ["=HYPERLINK(\"http://evil\")", "+1"],
                    {"name": "@SUM(A1:A2)", "value": "-2"},
                    {"name": "multi\nline \"quoted\"", "value": null},
                    {"name": "ελληνικά", "value": -3}
                ],
                "fileName": "export.csv",
                "bom": true
            }),
        )
        .await;
    let file = succeeded_file(&job);
    assert_eq!(file["fileName"], "export.csv");
    let bytes = app.download(&user.token, &file).await;
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "BOM requested");
    let mut rd = csv::Reader::from_reader(&bytes[3..]);
    assert_eq!(rd.headers().unwrap(), vec!["Name", "Value"]);
    let rows: Vec<Vec<String>> = rd
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["plain, with comma", "1.5"],
            vec!["'=HYPERLINK(\"http://evil\")", "'+1"],
            vec!["'@SUM(A1:A2)", "'-2"],
            vec!["multi\nline \"quoted\"", ""],
            vec!["ελληνικά", "-3"],
        ]
    );
}

#[tokio::test]
async fn invalid_generation_requests_are_422_with_field_errors() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let res = app
        .post(
            "/api/files/generate/pdf",
            Some(&user.token),
            json!({"title": "", "sections": [{"type": "heading", "text": "x", "level": 9}]}),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = error_fields(&body);
    assert!(
        fields.contains(&"title") && fields.contains(&"sections[0].level"),
        "{fields:?}"
    );

    let res = app
        .post(
            "/api/files/generate/csv",
            Some(&user.token),
            json!({"columns": [], "rows": []}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let res = app
        .post(
            "/api/files/generate/screenshot",
            Some(&user.token),
            json!({"url": "https://example.com/", "viewport": {"width": 5, "height": 99999}, "format": "png", "quality": 50}),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 3, "{body}");
}

// --- uploads and downloads --------------------------------------------------

#[tokio::test]
async fn an_upload_is_sniffed_stored_and_downloaded_with_safe_headers_ranges_and_etags() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let png = png_bytes();
    // The client's name and type lie; the stored type comes from the bytes.
    let res = app
        .upload(&user.token, "../../evil|name.txt", "text/plain", &png)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let file: Value = res.json().await.unwrap();
    assert_eq!(file["kind"], "upload");
    assert_eq!(file["mimeType"], "image/png");
    assert_eq!(file["fileName"], "evil_name.txt");
    assert_eq!(file["size"], png.len());
    assert!(file["jobId"].is_null());
    let url = file["downloadUrl"].as_str().unwrap().to_string();
    assert_eq!(url, format!("/api/files/{}", file["id"].as_str().unwrap()));

    let res = app.get(&url, Some(&user.token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], png.len().to_string().as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", file["sha256"].as_str().unwrap()));
    let cd = h["content-disposition"].to_str().unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"evil_name.txt\""),
        "{cd}"
    );
    assert!(cd.contains("filename*=UTF-8''evil_name.txt"), "{cd}");
    assert_eq!(res.bytes().await.unwrap().to_vec(), png);

    let res = app
        .client
        .get(app.url(&url))
        .bearer_auth(&user.token)
        .header("range", "bytes=1-3")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 1-3/{}", png.len()).as_str()
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), png[1..4].to_vec());

    let res = app
        .client
        .get(app.url(&url))
        .bearer_auth(&user.token)
        .header("range", format!("bytes={}-", png.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{}", png.len()).as_str()
    );
    assert_problem(
        res,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
    )
    .await;

    let res = app
        .client
        .get(app.url(&url))
        .bearer_auth(&user.token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // Listed, with a kind filter.
    let list: Value = app.get_json("/api/files?kind=upload", &user.token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let list: Value = app.get_json("/api/files?kind=pdf", &user.token).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    let res = app.get("/api/files?kind=exe", Some(&user.token)).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // The profile counts it.
    let profile: Value = app
        .get_user(&user.id, &user.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["stats"]["files"], 1, "{profile}");
    assert_eq!(profile["stats"]["fileBytes"], png.len(), "{profile}");

    // Deleting removes the row and the bytes.
    assert_eq!(app.files_on_disk().len(), 1);
    let res = app.delete(&url, Some(&user.token)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(app.files_on_disk().is_empty());
    assert_problem(
        app.get(&url, Some(&user.token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn text_and_csv_uploads_are_accepted_and_binary_junk_is_415() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let res = app
        .upload(&user.token, "data.csv", "text/csv", "a,b\nκ,λ\n".as_bytes())
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let f: Value = res.json().await.unwrap();
    assert_eq!(f["mimeType"], "text/csv");

    let res = app
        .upload(&user.token, "notes.txt", "text/plain", b"hello world")
        .await;
    let f: Value = res.json().await.unwrap();
    assert_eq!(f["mimeType"], "text/plain");

    // An ELF executable that claims to be a PDF.
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
    let res = app
        .upload(&user.token, "report.pdf", "application/pdf", &elf)
        .await;
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // Text with a NUL byte is not text.
    let res = app
        .upload(&user.token, "x.txt", "text/plain", b"abc\0def")
        .await;
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // Not multipart at all.
    let res = app
        .post("/api/files", Some(&user.token), json!({"a": 1}))
        .await;
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert_eq!(
        app.files_on_disk().len(),
        2,
        "refused uploads leave nothing behind"
    );
}

#[tokio::test]
async fn an_upload_over_the_limit_is_413_and_leaves_no_partial_file() {
    let app = spawn_app_with(&[("UPLOAD_MAX_BYTES", "200000")]).await;
    let user = app.new_user().await;
    // Larger than the limit but within the Content-Length slack, so that the
    // limit is enforced while streaming.
    let mut big = png_bytes();
    big.resize(230_000, 7);
    let res = app.upload(&user.token, "big.png", "image/png", &big).await;
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Far larger: refused from the Content-Length.
    let huge = vec![b'a'; 2_000_000];
    let res = app
        .upload(&user.token, "huge.txt", "text/plain", &huge)
        .await;
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(app.files_on_disk().is_empty(), "{:?}", app.files_on_disk());
    // Just under the limit is fine (axum's default body limit does not apply).
    let mut ok = png_bytes();
    ok.resize(190_000, 7);
    let res = app.upload(&user.token, "ok.png", "image/png", &ok).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn another_users_file_is_404_to_list_download_and_delete_and_admins_see_all() {
    let app = spawn_app().await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let admin = app.new_admin().await;
    let res = app
        .upload(&alice.token, "a.txt", "text/plain", b"alice's")
        .await;
    let file: Value = res.json().await.unwrap();
    let url = file["downloadUrl"].as_str().unwrap();

    assert_problem(
        app.get(url, Some(&bob.token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.delete(url, Some(&bob.token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let list: Value = app.get_json("/api/files", &bob.token).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    // Even asking for alice's files by user id shows bob only his own.
    let list: Value = app
        .get_json(&format!("/api/files?userId={}", alice.id), &bob.token)
        .await;
    assert!(list["items"].as_array().unwrap().is_empty());

    let list: Value = app.get_json("/api/files", &admin.token).await;
    assert_eq!(list["items"][0]["id"], file["id"]);
    assert_eq!(
        app.get(url, Some(&admin.token)).await.status(),
        StatusCode::OK
    );

    for bad in [
        "/api/files/..%2F..%2Fhs-platform.db",
        "/api/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/files/..",
        "/api/files/.tmp",
        "/api/files/00000000-0000-0000-0000-000000000000",
    ] {
        let res = app.get(bad, Some(&alice.token)).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    assert_problem(
        app.get(url, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn the_file_list_pages_with_a_cursor() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for i in 0..5 {
        let res = app
            .upload(&user.token, &format!("f{i}.txt"), "text/plain", b"x")
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/files?limit=2&cursor={c}"),
            None => "/api/files?limit=2".to_string(),
        };
        let page: Value = app.get_json(&path, &user.token).await;
        for f in page["items"].as_array().unwrap() {
            seen.push(f["fileName"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["f4.txt", "f3.txt", "f2.txt", "f1.txt", "f0.txt"]);
}

#[tokio::test]
async fn over_the_quota_uploads_and_submissions_are_507_and_a_job_fails_with_quota_exceeded() {
    // The per-user quota defaults to a tenth of this: 2,000 bytes.
    let app = spawn_app_with(&[("STORAGE_QUOTA_BYTES", "20000")]).await;
    let user = app.new_user().await;
    // A PDF embeds a font: far over the quota, which only the job can tell.
    let small = json!({"title": "T", "sections": [{"type": "paragraph", "text": "Hi"}]});
    let job = app.generate(&user.token, "pdf", small).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "quota_exceeded");
    assert!(app.files_on_disk().is_empty(), "a refused file is removed");
    // A request whose queued payload alone is over the quota is refused.
    let res = app
        .post(
            "/api/files/generate/pdf",
            Some(&user.token),
            long_document(),
        )
        .await;
    assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;

    let res = app
        .upload(&user.token, "a.txt", "text/plain", &[b'a'; 2001])
        .await;
    assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;
    let res = app
        .upload(&user.token, "a.txt", "text/plain", &[b'a'; 2000])
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "exactly at the quota is fine"
    );
    let res = app.upload(&user.token, "b.txt", "text/plain", b"b").await;
    assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;

    // Nine more accounts fill the total quota; the eleventh meets it.
    for _ in 0..9 {
        let other = app.new_user().await;
        let res = app
            .upload(&other.token, "c.txt", "text/plain", &[b'c'; 2000])
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let late = app.new_user().await;
    let res = app.upload(&late.token, "d.txt", "text/plain", b"d").await;
    assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;
    let res = app
        .post(
            "/api/files/generate/csv",
            Some(&late.token),
            json!({"columns": [{"key": "a"}], "rows": []}),
        )
        .await;
    assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;
}

#[tokio::test]
async fn a_per_user_quota_limits_one_user_but_not_another() {
    let app = spawn_app_with(&[("USER_QUOTA_BYTES", "500")]).await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    assert_eq!(
        app.upload(&alice.token, "a.txt", "text/plain", &[b'a'; 400])
            .await
            .status(),
        StatusCode::CREATED
    );
    let res = app
        .upload(&alice.token, "b.txt", "text/plain", &[b'a'; 400])
        .await;
    assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;
    assert_eq!(
        app.upload(&bob.token, "b.txt", "text/plain", &[b'b'; 400])
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn one_accounts_uploads_stop_at_its_quota_with_507_while_another_can_still_upload() {
    let app = spawn_app_with(&[("USER_QUOTA_BYTES", "1000")]).await;
    let attacker = app.new_user().await;
    let victim = app.new_user().await;
    // The attacker uploads until refused: exactly ten 100-byte files fit.
    let mut stored = 0;
    loop {
        let res = app
            .upload(&attacker.token, "fill.txt", "text/plain", &[b'x'; 100])
            .await;
        if res.status() != StatusCode::CREATED {
            assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;
            break;
        }
        stored += 1;
        assert!(stored <= 10, "the quota did not stop the uploads");
    }
    assert_eq!(stored, 10);
    assert_eq!(
        app.files_on_disk().len(),
        10,
        "the refused upload left nothing"
    );
    let res = app
        .upload(&victim.token, "mine.txt", "text/plain", &[b'v'; 100])
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn queued_job_payloads_count_against_their_owners_quota() {
    let app = spawn_app_with(&[("USER_QUOTA_BYTES", "2000")]).await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    // A job that will not run for an hour, holding 1,500 bytes of payload.
    let payload = json!({"filler": "p".repeat(1500)});
    app.state
        .jobs
        .enqueue(
            hs_platform::jobs::NewJob::new("jobs.noop", payload)
                .owner(&user.user_id())
                .run_at(hs_platform::time::Timestamp::now() + chrono::Duration::hours(1)),
        )
        .await
        .unwrap();
    let res = app
        .upload(&user.token, "a.txt", "text/plain", &[b'a'; 600])
        .await;
    assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;
    // A generation request whose own payload would not fit is refused too.
    let rows: Vec<Value> = (0..40).map(|i| json!({"a": format!("row {i}")})).collect();
    let res = app
        .post(
            "/api/files/generate/csv",
            Some(&user.token),
            json!({"columns": [{"key": "a"}], "rows": rows}),
        )
        .await;
    assert_problem(res, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;
    let res = app
        .upload(&user.token, "b.txt", "text/plain", &[b'b'; 400])
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "what is left still fits");
    let res = app
        .upload(&other.token, "c.txt", "text/plain", &[b'c'; 600])
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_disk_at_its_free_space_floor_refuses_files_and_backups_with_507_and_writes_nothing() {
    // A floor larger than any disk: the disk is always "at its floor".
    let app = spawn_app_with(&[("STORAGE_MIN_FREE_BYTES", "1152921504606846976")]).await;
    let user = app.new_user().await;
    let res = app
        .upload(&user.token, "a.txt", "text/plain", b"hello")
        .await;
    assert_problem(
        res,
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
    )
    .await;
    let res = app
        .post(
            "/api/files/generate/csv",
            Some(&user.token),
            json!({"columns": [{"key": "a"}], "rows": [{"a": 1}]}),
        )
        .await;
    assert_problem(
        res,
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
    )
    .await;

    // A job queued before the disk filled fails when it would store its file.
    let job = app
        .state
        .jobs
        .enqueue(
            hs_platform::jobs::NewJob::new(
                "files.csv",
                json!({"columns": [{"key": "a"}], "rows": [{"a": 1}]}),
            )
            .owner(&user.user_id()),
        )
        .await
        .unwrap();
    let job = app.wait_job(&job.id.to_string(), &user.token).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "insufficient_storage");
    assert!(app.files_on_disk().is_empty(), "{:?}", app.files_on_disk());

    let admin = app.new_admin().await;
    let res = app
        .post("/api/maintenance/backups", Some(&admin.token), json!({}))
        .await;
    assert_problem(
        res,
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
    )
    .await;
    let backups = app.data_dir().join("backups");
    let left = std::fs::read_dir(&backups).map_or(0, |d| d.count());
    assert_eq!(left, 0, "no backup file was written");

    // The database keeps working: accounts, sessions, profiles.
    let again = app.new_user().await;
    let res = app.get_user(&again.id, &again.token).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Mounts a tiny tmpfs on `dir` (root only); false when not permitted.
fn mount_tiny_tmpfs(dir: &Path, size: &str) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn an_upload_that_meets_a_full_disk_answers_507_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    if !mount_tiny_tmpfs(&files, "512k") {
        eprintln!(
            "SKIPPED an_upload_that_meets_a_full_disk_answers_507_and_leaves_no_partial_file: \
             mounting a tmpfs is not permitted here (needs root)"
        );
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(files.clone());
    let app = crate::helpers::spawn_app_in_with(
        dir,
        &[
            // No floor: the write itself meets "no space left on device".
            ("STORAGE_MIN_FREE_BYTES", "0"),
            ("STORAGE_QUOTA_BYTES", "104857600"),
        ],
    )
    .await;
    let user = app.new_user().await;
    let res = app
        .upload(&user.token, "big.txt", "text/plain", &vec![b'x'; 1 << 20])
        .await;
    assert_problem(
        res,
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
    )
    .await;
    assert!(app.files_on_disk().is_empty(), "{:?}", app.files_on_disk());
    // A file that fits is still accepted, and the database kept working.
    let res = app
        .upload(&user.token, "small.txt", "text/plain", &[b'y'; 1000])
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mut app = app;
    app.stop().await;
    drop(_unmount);
}

#[tokio::test]
async fn maintenance_reconciles_orphaned_files_and_rows_without_files() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let keep: Value = app
        .upload(&user.token, "keep.txt", "text/plain", b"keep")
        .await
        .json()
        .await
        .unwrap();
    let gone: Value = app
        .upload(&user.token, "gone.txt", "text/plain", b"gone!")
        .await
        .json()
        .await
        .unwrap();
    // Remove one stored file behind the service's back, and leave an old orphan.
    let files = app.files_on_disk();
    assert_eq!(files.len(), 2);
    let orphan = app
        .data_dir()
        .join("files")
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::write(&orphan, b"orphan bytes").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = app
        .data_dir()
        .join("files")
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::write(&fresh, b"in flight").unwrap();
    // Which stored file is "gone"? The one whose bytes are "gone!".
    for f in &files {
        if std::fs::read(f).unwrap() == b"gone!" {
            std::fs::remove_file(f).unwrap();
        }
    }

    let config = hs_platform::config::Config::from_map(&app.env).unwrap();
    let db = hs_platform::db::Db::open(&config).await.unwrap();
    let state = hs_platform::state::AppState::build(
        config,
        db.clone(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let dry = hs_platform::files::maintenance(&state.files, false)
        .await
        .unwrap();
    let by = |name: &str, acts: &[hs_platform::maintenance::Action]| {
        acts.iter()
            .find(|a| a.name == name)
            .map(|a| (a.count, a.bytes))
            .unwrap()
    };
    assert_eq!(by("files.orphans", &dry), (1, 12));
    assert_eq!(by("files.missing", &dry), (1, 5));
    assert!(orphan.exists(), "a dry run changes nothing");

    hs_platform::files::maintenance(&state.files, true)
        .await
        .unwrap();
    assert!(!orphan.exists());
    assert!(
        fresh.exists(),
        "young files may be in flight and are spared"
    );
    db.close().await;
    let res = app
        .get(gone["downloadUrl"].as_str().unwrap(), Some(&user.token))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .get(keep["downloadUrl"].as_str().unwrap(), Some(&user.token))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

// --- screenshots ------------------------------------------------------------

/// A page server on loopback: `/` is a solid-colour page whose image points
/// at `localhost` (not allowed), `/redirect` redirects to `localhost`,
/// `/slow` answers after a long time. Counts hits on the forbidden target.
struct Site {
    port: u16,
    forbidden_hits: Arc<AtomicUsize>,
    slow_hits: Arc<AtomicUsize>,
    popup_hits: Arc<AtomicUsize>,
}

async fn serve_site() -> Site {
    use axum::response::{Html, Redirect};
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let forbidden_hits = Arc::new(AtomicUsize::new(0));
    let slow_hits = Arc::new(AtomicUsize::new(0));
    let popup_hits = Arc::new(AtomicUsize::new(0));
    let p1 = popup_hits.clone();
    let (f1, f2, s1) = (
        forbidden_hits.clone(),
        forbidden_hits.clone(),
        slow_hits.clone(),
    );
    let app = axum::Router::new()
        .route(
            "/",
            get(move || async move {
                Html(format!(
                    "<!doctype html><html><head><style>html,body{{margin:0;height:100%;background:rgb(0,128,255)}}</style></head>\
                     <body><img src='http://localhost:{port}/secret.png' width=1 height=1></body></html>"
                ))
            }),
        )
        .route(
            "/secret.png",
            get(move || async move {
                f1.fetch_add(1, Ordering::SeqCst);
                "secret"
            }),
        )
        .route(
            "/secret",
            get(move || async move {
                f2.fetch_add(1, Ordering::SeqCst);
                Html("<body style='background:red'>secret</body>")
            }),
        )
        .route(
            "/redirect",
            get(move || async move { Redirect::temporary(&format!("http://localhost:{port}/secret")) }),
        )
        .route(
            "/escape",
            get(move || async move {
                Html(format!(
                    "<!doctype html><body style='background:rgb(0,128,255)'><script>\
                     const canary = 'http://localhost:{port}/secret';\
                     try {{ window.open(canary + '?popup'); }} catch (e) {{}}\
                     try {{ new Worker('/worker.js'); }} catch (e) {{}}\
                     try {{ navigator.serviceWorker.register('/sw.js'); }} catch (e) {{}}\
                     try {{ new WebSocket('ws://localhost:{port}/secret'); }} catch (e) {{}}\
                     for (const ms of [300, 1500, 3000]) setTimeout(() => {{ location.href = canary + '?timer' + ms; }}, ms);\
                     </script></body>"
                ))
            }),
        )
        .route(
            "/opener",
            get(move || async move {
                Html(
                    "<!doctype html><body style='margin:0'><script>\
                     const w = window.open('/popup');\
                     document.body.style.background = w ? 'rgb(255,0,0)' : 'rgb(0,128,255)';\
                     </script></body>",
                )
            }),
        )
        .route(
            "/popup",
            get(move || async move {
                p1.fetch_add(1, Ordering::SeqCst);
                Html("popup")
            }),
        )
        .route(
            "/tall",
            get(move || async move {
                Html(
                    "<!doctype html><body style='margin:0'>\
                     <div id='tall' style='width:150px;height:40000px;background:rgb(0,128,255)'></div></body>",
                )
            }),
        )
        .route(
            "/worker.js",
            get(move || async move {
                (
                    [("content-type", "text/javascript")],
                    format!("setInterval(() => fetch('http://localhost:{port}/secret?worker').catch(() => {{}}), 200);"),
                )
            }),
        )
        .route(
            "/sw.js",
            get(move || async move {
                (
                    [("content-type", "text/javascript")],
                    format!("setInterval(() => fetch('http://localhost:{port}/secret?sw').catch(() => {{}}), 200);"),
                )
            }),
        )
        .route(
            "/wait",
            get(move || async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Html("<body style='background:white'>done</body>")
            }),
        )
        .route(
            "/slow",
            get(move || async move {
                s1.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(25)).await;
                Html("late")
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Site {
        port,
        forbidden_hits,
        slow_hits,
        popup_hits,
    }
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>, png::ColorType) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf, info.color_type)
}

async fn screenshot_app() -> (TestApp, TestUser, Site) {
    screenshot_app_with(&[]).await
}

async fn screenshot_app_with(settings: &[(&str, &str)]) -> (TestApp, TestUser, Site) {
    let mut all = vec![
        ("SCREENSHOT_ALLOWED_HOSTS", "127.0.0.1"),
        ("SCREENSHOT_CONCURRENCY", "2"),
    ];
    all.extend_from_slice(settings);
    let app = spawn_app_with(&all).await;
    let user = app.new_user().await;
    let site = serve_site().await;
    (app, user, site)
}

#[tokio::test]
async fn a_screenshot_of_a_loopback_page_is_a_png_of_the_requested_size_and_colour_without_the_blocked_image()
 {
    let (app, user, site) = screenshot_app().await;
    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/", site.port), "viewport": {"width": 320, "height": 240},
                   "format": "png", "waitUntil": "networkidle", "timeoutMs": 30000}),
        )
        .await;
    let file = succeeded_file(&job);
    assert_eq!(file["mimeType"], "image/png");
    assert_eq!(file["kind"], "screenshot");
    let bytes = app.download(&user.token, &file).await;
    let (w, h, pixels, color) = decode_png(&bytes);
    assert_eq!((w, h), (320, 240));
    let step = match color {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected colour type {other:?}"),
    };
    let center = ((h / 2 * w + w / 2) as usize) * step;
    assert_eq!(
        &pixels[center..center + 3],
        &[0, 128, 255],
        "the page's colour"
    );
    assert_eq!(
        site.forbidden_hits.load(Ordering::SeqCst),
        0,
        "the image on a non-allowed loopback host was never fetched"
    );

    // JPEG with a quality, and a selector.
    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/", site.port), "viewport": {"width": 200, "height": 100},
                   "format": "jpeg", "quality": 60, "selector": "body"}),
        )
        .await;
    let file = succeeded_file(&job);
    assert_eq!(file["mimeType"], "image/jpeg");
    let bytes = app.download(&user.token, &file).await;
    assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));

    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/", site.port), "selector": "#missing"}),
        )
        .await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["code"], "page_failed");
}

#[tokio::test]
async fn screenshot_urls_that_reach_private_addresses_are_refused_with_422() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for url in [
        "http://127.0.0.1:9/",
        "http://localhost/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://100.64.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://0.0.0.0/",
        "file:///etc/passwd",
        "ftp://example.com/",
    ] {
        let res = app
            .post(
                "/api/files/generate/screenshot",
                Some(&user.token),
                json!({"url": url}),
            )
            .await;
        let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("127.0.0.1") && !message.contains("::1"),
            "{url}: the message names the address: {message}"
        );
    }
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_fails_the_job_without_reaching_it() {
    let (app, user, site) = screenshot_app().await;
    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/redirect", site.port), "timeoutMs": 20000}),
        )
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "url_refused", "{job}");
    assert_eq!(site.forbidden_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn popups_workers_and_timers_of_a_page_never_reach_a_loopback_canary_even_after_the_job() {
    let (app, user, site) = screenshot_app().await;
    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/escape", site.port), "waitUntil": "load",
                   "timeoutMs": 20000}),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // A second job that takes a few seconds: whatever the first page left
    // behind (timers at 1.5 s and 3 s, a worker and a service worker
    // fetching every 200 ms, a popup) would have hit the canary by now.
    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/wait", site.port), "timeoutMs": 20000}),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(site.forbidden_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_page_cannot_open_a_popup_even_to_an_allowed_address() {
    let (app, user, site) = screenshot_app().await;
    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/opener", site.port), "viewport": {"width": 100, "height": 80},
                   "waitUntil": "load", "timeoutMs": 20000}),
        )
        .await;
    let file = succeeded_file(&job);
    let (w, h, pixels, color) = decode_png(&app.download(&user.token, &file).await);
    let step = if color == png::ColorType::Rgba { 4 } else { 3 };
    let center = ((h / 2 * w + w / 2) as usize) * step;
    assert_eq!(
        &pixels[center..center + 3],
        &[0, 128, 255],
        "window.open returned null (red: the popup opened)"
    );
    assert_eq!(site.popup_hits.load(Ordering::SeqCst), 0);
    // The switches reached Chromium as switches (not as ignored `----x`).
    let cmdlines: Vec<String> = browser_pids(&app.data_dir())
        .iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect();
    let all = cmdlines.join("\n");
    assert!(all.contains(" --proxy-server=http://127.0.0.1:"), "{all}");
    assert!(
        !all.contains("----") && !all.contains("disable-popup-blocking"),
        "{all}"
    );
}

#[tokio::test]
async fn a_40000_px_tall_page_is_captured_at_most_16384_px_tall() {
    let (app, user, site) = screenshot_app().await;
    for extra in [json!({"fullPage": true}), json!({"selector": "#tall"})] {
        let mut body = json!({"url": format!("http://127.0.0.1:{}/tall", site.port),
                              "viewport": {"width": 200, "height": 100}, "timeoutMs": 30000});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let job = app.generate(&user.token, "screenshot", body).await;
        let file = succeeded_file(&job);
        let bytes = app.download(&user.token, &file).await;
        // The header alone: the image is never decoded whole.
        let reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let (w, h) = (reader.info().width, reader.info().height);
        assert!(w <= 200 && h == 16_384, "{extra}: {w}x{h}");
    }
}

#[tokio::test]
async fn an_idle_browser_is_shut_down_and_relaunched_by_the_next_screenshot() {
    let (app, user, site) = screenshot_app_with(&[("SCREENSHOT_IDLE_SECONDS", "1")]).await;
    let admin = app.new_admin().await;
    let url = format!("http://127.0.0.1:{}/", site.port);
    for round in 0..2 {
        let job = app
            .generate(
                &user.token,
                "screenshot",
                json!({"url": url, "viewport": {"width": 100, "height": 80}}),
            )
            .await;
        succeeded_file(&job);
        wait_until(
            &format!("round {round}: no Chromium process left"),
            async || {
                let pids = browser_pids(&app.data_dir());
                if pids.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{pids:?}"))
                }
            },
        )
        .await;
    }
    let health: Value = app
        .get_json("/api/monitoring/health-detailed", &admin.token)
        .await;
    let browser = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "browser")
        .unwrap()
        .clone();
    let detail = browser["detail"].as_str().unwrap();
    assert!(
        detail.contains("started on first use") && detail.contains("2 launches"),
        "{detail}"
    );
}

#[tokio::test]
async fn the_browsers_resident_memory_is_reported_and_counts_towards_the_rss_alert() {
    let (app, user, site) = screenshot_app_with(&[
        ("ALERT_INTERVAL_SECONDS", "1"),
        ("ALERT_MAX_RSS_BYTES", "1"),
        ("ALERT_MIN_FREE_DISK_BYTES", "0"),
    ])
    .await;
    let admin = app.new_admin().await;
    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/", site.port), "viewport": {"width": 100, "height": 80}}),
        )
        .await;
    succeeded_file(&job);
    let system: Value = app.get_json("/api/monitoring/system", &admin.token).await;
    assert!(system["browserProcesses"].as_u64().unwrap() > 0, "{system}");
    assert!(system["browserRssBytes"].as_u64().unwrap() > 0, "{system}");
    let health: Value = app
        .get_json("/api/monitoring/health-detailed", &admin.token)
        .await;
    let detail = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "browser")
        .map(|c| c["detail"].to_string())
        .unwrap();
    assert!(detail.contains("MiB resident"), "{detail}");
    wait_until("the max_rss alert to fire", async || {
        let alerts: Value = app.get_json("/api/monitoring/alerts", &admin.token).await;
        let fired = alerts["firing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "max_rss" && a["value"].as_f64().unwrap_or(0.0) > 1.0);
        if fired {
            Ok(())
        } else {
            Err(alerts.to_string())
        }
    })
    .await;
}

fn browser_pids(data_dir: &Path) -> Vec<u32> {
    let marker = format!("--user-data-dir={}", data_dir.join("chromium").display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&marker) {
                pids.push(pid);
            }
        }
    }
    pids
}

#[tokio::test]
async fn a_browser_killed_mid_job_is_relaunched_and_the_next_job_succeeds() {
    let (mut app, user, site) = screenshot_app().await;
    let res = app
        .post(
            "/api/files/generate/screenshot",
            Some(&user.token),
            json!({"url": format!("http://127.0.0.1:{}/slow", site.port), "timeoutMs": 20000}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let slow_job: Value = res.json().await.unwrap();
    wait_until("the browser to reach the slow page", async || {
        match site.slow_hits.load(Ordering::SeqCst) {
            0 => Err("no hit yet"),
            _ => Ok(()),
        }
    })
    .await;
    let pids = browser_pids(&app.data_dir());
    assert!(!pids.is_empty(), "a browser is running");
    for pid in &pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }

    let job = app
        .generate(
            &user.token,
            "screenshot",
            json!({"url": format!("http://127.0.0.1:{}/", site.port), "viewport": {"width": 100, "height": 80}}),
        )
        .await;
    let file = succeeded_file(&job);
    let (w, h, _, _) = decode_png(&app.download(&user.token, &file).await);
    assert_eq!((w, h), (100, 80));
    let slow = app
        .wait_job(slow_job["id"].as_str().unwrap(), &user.token)
        .await;
    assert_ne!(slow["status"], "running");

    // Stopping the service leaves no browser process behind.
    let dir = app.data_dir();
    app.stop().await;
    // Zombies (exited, not yet reaped by their parent) are not running.
    wait_until("every browser process to exit", async || {
        let left: Vec<u32> = browser_pids(&dir)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| !s.contains(") Z "))
                    .unwrap_or(false)
            })
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("leaked: {left:?}"))
        }
    })
    .await;
}
