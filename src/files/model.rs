//! Types of the files domain: the File metadata body, the document model
//! shared by the PDF and DOCX renderers, the CSV and screenshot requests, and
//! their validation (every limit lives here).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::ids::{FileId, JobId, UserId};
use crate::time::Timestamp;

/// What produced a stored file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Pdf,
    Docx,
    Csv,
    Screenshot,
    Upload,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Docx => "docx",
            Self::Csv => "csv",
            Self::Screenshot => "screenshot",
            Self::Upload => "upload",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pdf" => Self::Pdf,
            "docx" => Self::Docx,
            "csv" => Self::Csv,
            "screenshot" => Self::Screenshot,
            "upload" => Self::Upload,
            _ => return None,
        })
    }
}

/// File metadata (the API's **File** body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct File {
    pub id: FileId,
    /// pdf, docx, csv, screenshot or upload.
    pub kind: String,
    pub owner_id: UserId,
    /// Sanitised name offered on download.
    pub file_name: String,
    pub mime_type: String,
    /// Bytes.
    pub size: i64,
    /// Hex SHA-256 of the content (also the download's ETag).
    pub sha256: String,
    pub created_at: Timestamp,
    /// The generation job, null for uploads.
    pub job_id: Option<JobId>,
    /// `/api/files/{id}`.
    pub download_url: String,
}

/// `POST /api/files`: one multipart part named `file` (the document only;
/// the handler streams the part).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file's content; its type is sniffed and must be allowed.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `{"file": File}`: a generation job's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileResult {
    pub file: File,
}

/// `GET /api/files` filters.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    /// pdf, docx, csv, screenshot or upload.
    pub kind: Option<String>,
    /// Admins only: files of this user.
    pub user_id: Option<UserId>,
    /// Items per page, 1-200 (default 50).
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

// --- the document model (PDF and DOCX) --------------------------------------

pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_SECTIONS: usize = 20_000;
pub const MAX_TEXT_CHARS: usize = 100_000;
pub const MAX_TOTAL_CHARS: usize = 5_000_000;
pub const MAX_LIST_ITEMS: usize = 10_000;
pub const MAX_TABLE_ROWS: usize = 10_000;
pub const MAX_TABLE_COLUMNS: usize = 50;
pub const MAX_KEYWORDS: usize = 50;

/// A document rendered to PDF or DOCX.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    pub title: String,
    #[serde(default)]
    pub metadata: DocMetadata,
    #[serde(default)]
    pub options: DocOptions,
    pub sections: Vec<Section>,
    /// Name offered on download (sanitised; the extension is added).
    #[serde(default)]
    pub file_name: Option<String>,
    /// Orders the caller's own jobs: a higher priority runs before their
    /// lower ones (default 0); fairness between users is unchanged. Users
    /// -10 to 10, admins -100 to 100.
    #[serde(default)]
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocMetadata {
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocOptions {
    #[serde(default)]
    pub page_size: PageSize,
    #[serde(default)]
    pub orientation: Orientation,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PageSize {
    #[default]
    A4,
    Letter,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    #[default]
    Portrait,
    Landscape,
}

impl DocOptions {
    /// Page width and height in millimetres.
    pub fn page_mm(&self) -> (f32, f32) {
        let (w, h) = match self.page_size {
            PageSize::A4 => (210.0, 297.0),
            PageSize::Letter => (215.9, 279.4),
        };
        match self.orientation {
            Orientation::Portrait => (w, h),
            Orientation::Landscape => (h, w),
        }
    }
}

/// One block of a document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Section {
    /// A heading of level 1 to 3.
    Heading {
        text: String,
        #[serde(default = "one")]
        level: u8,
    },
    Paragraph {
        text: String,
    },
    /// A bulleted (or, with `ordered`, numbered) list.
    List {
        items: Vec<String>,
        #[serde(default)]
        ordered: bool,
    },
    /// A table; with `header`, the first row is the header row. Cells are
    /// strings, numbers, booleans or null.
    Table {
        #[schema(value_type = Vec<Vec<Object>>)]
        rows: Vec<Vec<Value>>,
        #[serde(default)]
        header: bool,
    },
}

fn one() -> u8 {
    1
}

/// The text of a table cell.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// --- CSV ----------------------------------------------------------------------

pub const MAX_CSV_COLUMNS: usize = 500;
pub const MAX_CSV_ROWS: usize = 1_000_000;
/// Excel's own limit on the characters of one cell.
pub const MAX_CSV_CELL_CHARS: usize = 32_767;

/// A CSV file to produce.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CsvRequest {
    pub columns: Vec<CsvColumn>,
    /// Each row is an object (values by column key) or an array (values by
    /// column position).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
    #[serde(default)]
    pub file_name: Option<String>,
    /// Start with a UTF-8 byte-order mark (helps Excel).
    #[serde(default)]
    pub bom: bool,
    /// Orders the caller's own jobs: a higher priority runs before their
    /// lower ones (default 0); fairness between users is unchanged. Users
    /// -10 to 10, admins -100 to 100.
    #[serde(default)]
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CsvColumn {
    pub key: String,
    /// Header text (defaults to the key).
    #[serde(default)]
    pub title: Option<String>,
}

impl CsvRequest {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.columns.is_empty() || self.columns.len() > MAX_CSV_COLUMNS {
            errors.push(FieldError::new(
                "columns",
                format!("must have 1 to {MAX_CSV_COLUMNS} columns"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.columns.iter().enumerate() {
            if c.key.is_empty() || c.key.chars().count() > 200 {
                errors.push(FieldError::new(
                    format!("columns[{i}].key"),
                    "must have 1 to 200 characters",
                ));
            } else if !seen.insert(c.key.as_str()) {
                errors.push(FieldError::new(
                    format!("columns[{i}].key"),
                    "duplicate key",
                ));
            }
            if c.title.as_ref().is_some_and(|t| t.chars().count() > 1000) {
                errors.push(FieldError::new(
                    format!("columns[{i}].title"),
                    "must be at most 1000 characters",
                ));
            }
        }
        if self.rows.len() > MAX_CSV_ROWS {
            errors.push(FieldError::new(
                "rows",
                format!("at most {MAX_CSV_ROWS} rows"),
            ));
        }
        if let Some(n) = &self.file_name
            && n.chars().count() > 200
        {
            errors.push(FieldError::new(
                "fileName",
                "must be at most 200 characters",
            ));
        }
        for (r, row) in self.rows.iter().enumerate() {
            let cells: Vec<&Value> = match row {
                Value::Object(map) => map.values().collect(),
                Value::Array(items) => {
                    if items.len() > self.columns.len() {
                        errors.push(FieldError::new(
                            format!("rows[{r}]"),
                            "has more cells than there are columns",
                        ));
                    }
                    items.iter().collect()
                }
                _ => {
                    errors.push(FieldError::new(
                        format!("rows[{r}]"),
                        "must be an object or an array",
                    ));
                    continue;
                }
            };
            for cell in cells {
                let bad = match cell {
                    Value::Array(_) | Value::Object(_) => {
                        Some("cells must be strings, numbers, booleans or null".to_string())
                    }
                    Value::String(s)
                        if s.len() > MAX_CSV_CELL_CHARS
                            && s.chars().count() > MAX_CSV_CELL_CHARS =>
                    {
                        Some(format!(
                            "cells must be at most {MAX_CSV_CELL_CHARS} characters"
                        ))
                    }
                    _ => None,
                };
                if let Some(message) = bad {
                    errors.push(FieldError::new(format!("rows[{r}]"), message));
                    break;
                }
            }
            if errors.len() > 20 {
                break;
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

// --- screenshots ----------------------------------------------------------------

pub const MIN_VIEWPORT: u32 = 16;
pub const MAX_VIEWPORT_WIDTH: u32 = 3840;
pub const MAX_VIEWPORT_HEIGHT: u32 = 4320;
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const MIN_TIMEOUT_MS: u64 = 1_000;
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// A screenshot of a web page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScreenshotRequest {
    /// An http(s) URL on a public address (see `SCREENSHOT_ALLOWED_HOSTS`).
    pub url: String,
    #[serde(default)]
    pub viewport: Viewport,
    /// Capture the whole scrollable page, not just the viewport.
    #[serde(default)]
    pub full_page: bool,
    /// Capture only the first element matching this CSS selector.
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub format: ImageFormat,
    /// JPEG quality 1-100 (default 80); JPEG only.
    #[serde(default)]
    pub quality: Option<u8>,
    #[serde(default)]
    pub wait_until: WaitUntil,
    /// 1000-60000 (default 30000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub file_name: Option<String>,
    /// Orders the caller's own jobs: a higher priority runs before their
    /// lower ones (default 0); fairness between users is unchanged. Users
    /// -10 to 10, admins -100 to 100.
    #[serde(default)]
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
}

impl Default for Viewport {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 800,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    #[default]
    Png,
    Jpeg,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitUntil {
    #[default]
    Load,
    Networkidle,
}

impl ScreenshotRequest {
    /// Checks everything but the URL's address (see `ssrf`).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(message) = super::ssrf::parse_target(&self.url) {
            errors.push(FieldError::new("url", message));
        }
        let v = self.viewport;
        if !(MIN_VIEWPORT..=MAX_VIEWPORT_WIDTH).contains(&v.width) {
            errors.push(FieldError::new(
                "viewport.width",
                format!("must be from {MIN_VIEWPORT} to {MAX_VIEWPORT_WIDTH}"),
            ));
        }
        if !(MIN_VIEWPORT..=MAX_VIEWPORT_HEIGHT).contains(&v.height) {
            errors.push(FieldError::new(
                "viewport.height",
                format!("must be from {MIN_VIEWPORT} to {MAX_VIEWPORT_HEIGHT}"),
            ));
        }
        if let Some(s) = &self.selector
            && (s.trim().is_empty() || s.chars().count() > 500)
        {
            errors.push(FieldError::new("selector", "must have 1 to 500 characters"));
        }
        match (self.format, self.quality) {
            (ImageFormat::Png, Some(_)) => {
                errors.push(FieldError::new("quality", "applies to jpeg only"))
            }
            (ImageFormat::Jpeg, Some(q)) if !(1..=100).contains(&q) => {
                errors.push(FieldError::new("quality", "must be from 1 to 100"))
            }
            _ => {}
        }
        if let Some(t) = self.timeout_ms
            && !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&t)
        {
            errors.push(FieldError::new(
                "timeoutMs",
                format!("must be from {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}"),
            ));
        }
        if let Some(n) = &self.file_name
            && n.chars().count() > 200
        {
            errors.push(FieldError::new(
                "fileName",
                "must be at most 200 characters",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS))
    }
}

/// A safe download name: no path separators, control or quoting characters,
/// no leading dots, at most 150 characters, with `ext` enforced when given.
pub fn sanitize_file_name(raw: Option<&str>, default_stem: &str, ext: Option<&str>) -> String {
    let raw = raw.unwrap_or("");
    // Keep only the last path component of whatever the client sent.
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = base
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '"' | '\'' | '<' | '>' | ':' | '|' | '?' | '*' | ';' | '%' => '_',
            c => c,
        })
        .collect();
    name = name.trim().trim_start_matches('.').trim().to_string();
    if let Some(ext) = ext {
        let lower = name.to_lowercase();
        let dotted = format!(".{ext}");
        if lower.ends_with(&dotted) {
            name.truncate(name.len() - dotted.len());
        }
    }
    let mut stem: String = name.chars().take(150).collect();
    stem = stem.trim().to_string();
    if stem.is_empty() {
        stem = default_stem.to_string();
    }
    match ext {
        Some(ext) => format!("{stem}.{ext}"),
        None => stem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_quotes_and_leading_dots() {
        assert_eq!(
            sanitize_file_name(Some("../../etc/passwd"), "f", None),
            "passwd"
        );
        assert_eq!(
            sanitize_file_name(Some("..\\..\\boot.ini"), "f", None),
            "boot.ini"
        );
        assert_eq!(
            sanitize_file_name(Some("a\"b\r\n.pdf"), "f", Some("pdf")),
            "a_b.pdf"
        );
        assert_eq!(
            sanitize_file_name(Some("..."), "report", Some("pdf")),
            "report.pdf"
        );
        assert_eq!(
            sanitize_file_name(None, "report", Some("csv")),
            "report.csv"
        );
        assert_eq!(
            sanitize_file_name(Some("Résumé κόσμε"), "f", Some("docx")),
            "Résumé κόσμε.docx"
        );
    }

    #[test]
    fn landscape_swaps_the_page_dimensions() {
        let o = DocOptions {
            page_size: PageSize::Letter,
            orientation: Orientation::Landscape,
        };
        assert_eq!(o.page_mm(), (279.4, 215.9));
    }
}
