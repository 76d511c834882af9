//! Multipart uploads: the `file` part is streamed to a temporary file with
//! `UPLOAD_MAX_BYTES` enforced as bytes arrive (never buffered whole), hashed
//! on the way, its type sniffed from the content against
//! `UPLOAD_ALLOWED_TYPES`, the quota checked, and only then synced, renamed
//! into place and recorded. Any failure, or the client going away, drops the
//! temporary file. Nothing is written when the quota is already spent or the
//! disk is at its free-space floor, and the floor is checked again every
//! [`ROOM_CHECK_BYTES`] while streaming; a write that meets a full disk
//! anyway answers 507 `insufficient_storage` (see `error.rs`).

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::Files;
use super::model::{File, FileKind, sanitize_file_name};
use super::storage::Stored;
use super::{NewFile, check_quota, record};
use crate::error::{AppError, Result};
use crate::ids::UserId;

/// Bytes kept from the start of the upload for sniffing.
const SNIFF_BYTES: usize = 64 * 1024;

/// How often (in bytes written) a streaming upload checks the free-space
/// floor again: concurrent uploads cannot dig far below it.
const ROOM_CHECK_BYTES: u64 = 1 << 20;

/// Decides whether a stream of bytes is UTF-8 text without NUL bytes.
#[derive(Default)]
pub struct TextCheck {
    carry: Vec<u8>,
    ok: bool,
    started: bool,
}

impl TextCheck {
    pub fn new() -> Self {
        Self {
            carry: Vec::new(),
            ok: true,
            started: false,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.started = true;
        if !self.ok {
            return;
        }
        if chunk.contains(&0) {
            self.ok = false;
            return;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        match std::str::from_utf8(&buf) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => {
                // An incomplete character at the end: keep it for the next chunk.
                self.carry = buf[e.valid_up_to()..].to_vec();
            }
            Err(_) => self.ok = false,
        }
    }

    /// True when everything fed was complete UTF-8 without NULs.
    pub fn is_text(&self) -> bool {
        self.ok && self.started && self.carry.is_empty()
    }
}

/// The MIME type of the content, decided by its bytes (the client's name and
/// type only choose between text/csv and text/plain for text).
pub fn sniff(head: &[u8], is_text: bool, name: &str, declared: Option<&str>) -> Option<String> {
    if let Some(t) = infer::get(head) {
        return Some(t.mime_type().to_string());
    }
    if is_text {
        let csv = name.to_ascii_lowercase().ends_with(".csv")
            || declared.is_some_and(|d| d.eq_ignore_ascii_case("text/csv"));
        return Some(if csv { "text/csv" } else { "text/plain" }.to_string());
    }
    None
}

fn multipart_error(e: MultipartError) -> AppError {
    AppError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
}

/// Handles `POST /api/files`.
pub async fn upload(state: &Files, owner: &UserId, mut multipart: Multipart) -> Result<File> {
    let max = state.config.upload_max_bytes;
    // The file must be the first part: anything else would have to be read
    // (unbounded) to be skipped.
    let mut field = match multipart.next_field().await.map_err(multipart_error)? {
        Some(f) if f.name() == Some("file") => f,
        Some(f) => {
            return Err(AppError::BadRequest(format!(
                "unexpected part {:?}: send the file in a part named \"file\"",
                f.name().unwrap_or("")
            )));
        }
        None => {
            return Err(AppError::validation(
                "file",
                "send the file in a multipart part named \"file\"",
            ));
        }
    };
    let file_name = sanitize_file_name(field.file_name(), "upload", None);
    let declared = field.content_type().map(str::to_string);

    // Refused before a byte is written: a spent quota, a disk at its floor.
    check_quota(state, owner, 1).await?;
    let temp = state.files.storage().temp();
    let mut out = tokio::fs::File::create(temp.path())
        .await
        .map_err(|e| anyhow::Error::new(e).context("failed to create a temporary file"))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(8192);
    let mut text = TextCheck::new();
    let mut next_room_check = ROOM_CHECK_BYTES;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        size += chunk.len() as u64;
        if size > max {
            return Err(AppError::PayloadTooLarge(format!(
                "the file is larger than the limit of {max} bytes"
            )));
        }
        if size >= next_room_check {
            state.files.ensure_room(chunk.len() as u64)?;
            next_room_check = size + ROOM_CHECK_BYTES;
        }
        hasher.update(&chunk);
        text.feed(&chunk);
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| anyhow::Error::new(e).context("failed to write the upload"))?;
    }
    out.flush()
        .await
        .map_err(|e| anyhow::Error::new(e).context("failed to write the upload"))?;
    drop(out);
    drop(field);
    if multipart
        .next_field()
        .await
        .map_err(multipart_error)?
        .is_some()
    {
        return Err(AppError::BadRequest(
            "send one part only, named \"file\"".into(),
        ));
    }

    if size == 0 {
        return Err(AppError::validation("file", "the file is empty"));
    }
    let mime = sniff(&head, text.is_text(), &file_name, declared.as_deref())
        .filter(|m| state.config.upload_allowed_types.iter().any(|a| a == m))
        .ok_or_else(|| {
            AppError::UnsupportedMediaType(format!(
                "the content is not one of the allowed types: {}",
                state.config.upload_allowed_types.join(", ")
            ))
        })?;
    check_quota(state, owner, size).await?;

    let storage_name = state.files.storage().commit(temp).await?;
    let stored = Stored {
        storage_name,
        size,
        sha256: hex::encode(hasher.finalize()),
    };
    record(
        state,
        NewFile {
            owner,
            kind: FileKind::Upload,
            file_name,
            mime_type: mime,
            job_id: None,
        },
        stored,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_check_accepts_utf8_split_across_chunks() {
        let s = "κόσμε, naïve café".as_bytes();
        let mut t = TextCheck::new();
        for chunk in s.chunks(3) {
            t.feed(chunk);
        }
        assert!(t.is_text());
    }

    #[test]
    fn text_check_refuses_nul_and_invalid_utf8() {
        let mut t = TextCheck::new();
        t.feed(b"abc\0def");
        assert!(!t.is_text());
        let mut t = TextCheck::new();
        t.feed(&[0x66, 0xff, 0x66]);
        assert!(!t.is_text());
        let mut t = TextCheck::new();
        t.feed(&[0xce]); // a truncated two-byte character
        assert!(!t.is_text());
    }

    #[test]
    fn sniffing_trusts_content_not_names() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(
            sniff(png, false, "x.txt", Some("text/plain")).unwrap(),
            "image/png"
        );
        assert_eq!(
            sniff(b"a,b\n1,2\n", true, "data.csv", None).unwrap(),
            "text/csv"
        );
        assert_eq!(sniff(b"hello", true, "x.pdf", None).unwrap(), "text/plain");
        assert!(
            sniff(b"\x7fELF\x02\x01", false, "x.pdf", Some("application/pdf"))
                .is_none_or(|m| m != "application/pdf")
        );
    }
}
