//! Checking a document request: every invalid field with its path
//! (`sections[3].rows[1][0]`), and the budget of text the whole document may
//! hold.

use serde_json::Value;

use super::model::{
    Document, MAX_KEYWORDS, MAX_LIST_ITEMS, MAX_SECTIONS, MAX_TABLE_COLUMNS, MAX_TABLE_ROWS,
    MAX_TEXT_CHARS, MAX_TITLE_CHARS, MAX_TOTAL_CHARS, Section, cell_text,
};
use crate::error::FieldError;

impl Document {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut check = DocumentCheck::default();
        self.check_front_matter(&mut check);
        if self.sections.is_empty() {
            check.error("sections", "must not be empty");
        }
        if self.sections.len() > MAX_SECTIONS {
            check.error("sections", format!("at most {MAX_SECTIONS} sections"));
        }
        for (i, s) in self.sections.iter().enumerate() {
            check_section(&mut check, i, s);
            if check.errors.len() > 20 {
                break;
            }
        }
        if check.total > MAX_TOTAL_CHARS {
            check.error(
                "sections",
                format!("the document must have at most {MAX_TOTAL_CHARS} characters of text"),
            );
        }
        check.finish()
    }

    /// The title, the metadata and the file name.
    fn check_front_matter(&self, check: &mut DocumentCheck) {
        if self.title.trim().is_empty() {
            check.error("title", "must not be empty");
        }
        check.text("title", &self.title, MAX_TITLE_CHARS);
        if let Some(a) = &self.metadata.author {
            check.text("metadata.author", a, MAX_TITLE_CHARS);
        }
        if let Some(s) = &self.metadata.subject {
            check.text("metadata.subject", s, MAX_TITLE_CHARS);
        }
        if self.metadata.keywords.len() > MAX_KEYWORDS {
            check.error(
                "metadata.keywords",
                format!("at most {MAX_KEYWORDS} keywords"),
            );
        }
        for (i, k) in self.metadata.keywords.iter().enumerate() {
            check.text(format!("metadata.keywords[{i}]"), k, 100);
        }
        if let Some(name) = &self.file_name {
            check.text("fileName", name, 200);
        }
    }
}

/// The field errors of a document, and the characters of text counted so
/// far (the whole document has a budget).
#[derive(Default)]
struct DocumentCheck {
    errors: Vec<FieldError>,
    total: usize,
}

impl DocumentCheck {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Counts `s` and checks it has at most `max` characters.
    fn text(&mut self, field: impl Into<String>, s: &str, max: usize) {
        let n = s.chars().count();
        self.total += n;
        if n > max {
            self.error(field, format!("must be at most {max} characters"));
        }
    }

    fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Section `i`: its level, text, list items or table cells.
fn check_section(check: &mut DocumentCheck, i: usize, section: &Section) {
    let at = |f: &str| format!("sections[{i}].{f}");
    match section {
        Section::Heading { text, level } => {
            if !(1..=3).contains(level) {
                check.error(at("level"), "must be 1, 2 or 3");
            }
            check.text(at("text"), text, MAX_TITLE_CHARS);
        }
        Section::Paragraph { text } => check.text(at("text"), text, MAX_TEXT_CHARS),
        Section::List { items, .. } => {
            if items.is_empty() {
                check.error(at("items"), "must not be empty");
            }
            if items.len() > MAX_LIST_ITEMS {
                check.error(at("items"), format!("at most {MAX_LIST_ITEMS} items"));
            }
            for (j, item) in items.iter().enumerate() {
                check.text(at(&format!("items[{j}]")), item, MAX_TEXT_CHARS);
            }
        }
        Section::Table { rows, .. } => check_table(check, &at, rows),
    }
}

/// A table's rows (1 to `MAX_TABLE_COLUMNS` cells each) and its cells
/// (scalars only).
fn check_table(check: &mut DocumentCheck, at: &dyn Fn(&str) -> String, rows: &[Vec<Value>]) {
    if rows.is_empty() {
        check.error(at("rows"), "must not be empty");
    }
    if rows.len() > MAX_TABLE_ROWS {
        check.error(at("rows"), format!("at most {MAX_TABLE_ROWS} rows"));
    }
    for (r, row) in rows.iter().enumerate() {
        if row.is_empty() || row.len() > MAX_TABLE_COLUMNS {
            check.error(
                at(&format!("rows[{r}]")),
                format!("must have 1 to {MAX_TABLE_COLUMNS} cells"),
            );
        }
        for (c, cell) in row.iter().enumerate() {
            if cell.is_array() || cell.is_object() {
                check.error(
                    at(&format!("rows[{r}][{c}]")),
                    "must be a string, number, boolean or null",
                );
            } else {
                check.text(at(&format!("rows[{r}][{c}]")), &cell_text(cell), 10_000);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_validated_with_field_paths() {
        let doc: Document = serde_json::from_value(serde_json::json!({
            "title": "",
            "sections": [{"type": "heading", "text": "x", "level": 7},
                         {"type": "table", "rows": [[{"a": 1}]]}]
        }))
        .unwrap();
        let errs = doc.validate().unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"title"), "{fields:?}");
        assert!(fields.contains(&"sections[0].level"), "{fields:?}");
        assert!(fields.contains(&"sections[1].rows[0][0]"), "{fields:?}");
    }

    fn fields(check: DocumentCheck) -> Vec<String> {
        check.errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn sections_are_checked_by_kind() {
        let mut check = DocumentCheck::default();
        let list = Section::List {
            items: vec![],
            ordered: false,
        };
        check_section(&mut check, 2, &list);
        let table = Section::Table {
            rows: vec![
                vec![],
                vec![serde_json::json!([1]), serde_json::json!("ok")],
            ],
            header: false,
        };
        check_section(&mut check, 3, &table);
        assert_eq!(check.total, 2);
        assert_eq!(
            fields(check),
            [
                "sections[2].items",
                "sections[3].rows[0]",
                "sections[3].rows[1][0]"
            ]
        );
    }

    #[test]
    fn text_counts_towards_the_budget_and_its_own_limit() {
        let mut check = DocumentCheck::default();
        check.text("a", "héllo", 5);
        check.text("b", "toolong", 3);
        assert_eq!(check.total, 12);
        assert_eq!(fields(check), ["b"]);
    }
}
