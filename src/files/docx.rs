//! DOCX rendering with docx-rs: a pure function of a validated
//! [`Document`]. Word's own building blocks are used throughout: defined
//! styles (Normal, Title, Heading1-3, ListParagraph, TableGrid), numbering
//! definitions for bulleted and numbered lists (each list restarts at 1),
//! real tables, and core document properties (docx-rs cannot set title,
//! author, subject or keywords, so `docProps/core.xml` is written here).

use std::io::Cursor;

use docx_rs::{
    AbstractNumbering, Docx, IndentLevel, Level, LevelJc, LevelOverride, LevelText, NumberFormat,
    Numbering, NumberingId, PageOrientationType, Paragraph, Run, RunFonts, Shading,
    SpecialIndentType, Start, Style, StyleType, Table, TableCell, TableRow, WidthType,
};

use super::model::{Document, Orientation, PageSize, Section, cell_text};

const BULLET_ABSTRACT: usize = 1;
const DECIMAL_ABSTRACT: usize = 2;

fn styles(docx: Docx) -> Docx {
    let font = RunFonts::new()
        .ascii("Calibri")
        .hi_ansi("Calibri")
        .east_asia("Calibri")
        .cs("Calibri");
    docx.default_fonts(font)
        .default_size(22)
        .add_style(
            Style::new("Normal", StyleType::Paragraph)
                .name("Normal")
                .size(22)
                .q_format(true),
        )
        .add_style(
            Style::new("Title", StyleType::Paragraph)
                .name("Title")
                .based_on("Normal")
                .next("Normal")
                .size(48)
                .bold()
                .q_format(true),
        )
        .add_style(heading(1, 32))
        .add_style(heading(2, 28))
        .add_style(heading(3, 24))
        .add_style(
            Style::new("ListParagraph", StyleType::Paragraph)
                .name("List Paragraph")
                .based_on("Normal")
                .indent(Some(720), None, None, None)
                .q_format(true),
        )
        .add_style(Style::new("TableGrid", StyleType::Table).name("Table Grid"))
}

fn heading(level: usize, half_points: usize) -> Style {
    Style::new(format!("Heading{level}"), StyleType::Paragraph)
        .name(format!("heading {level}"))
        .based_on("Normal")
        .next("Normal")
        .size(half_points)
        .bold()
        .color("1F3864")
        .outline_lvl(level - 1)
        .q_format(true)
}

fn numbering_definitions(docx: Docx) -> Docx {
    let bullets = ["\u{2022}", "\u{25E6}", "\u{25AA}"];
    let mut bullet = AbstractNumbering::new(BULLET_ABSTRACT);
    let mut decimal = AbstractNumbering::new(DECIMAL_ABSTRACT);
    for lvl in 0..3usize {
        let indent = 720 * (lvl as i32 + 1);
        let level = |format: &str, text: &str| {
            Level::new(
                lvl,
                Start::new(1),
                NumberFormat::new(format),
                LevelText::new(text),
                LevelJc::new("left"),
            )
            .indent(
                Some(indent),
                Some(SpecialIndentType::Hanging(360)),
                None,
                None,
            )
        };
        bullet = bullet.add_level(level("bullet", bullets[lvl]));
        decimal = decimal.add_level(level(
            ["decimal", "lowerLetter", "lowerRoman"][lvl],
            &format!("%{}.", lvl + 1),
        ));
    }
    docx.add_abstract_numbering(bullet)
        .add_abstract_numbering(decimal)
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Strips characters that XML 1.0 forbids (docx-rs would write them raw).
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| (*c as u32) >= 0x20 || matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

fn core_xml(doc: &Document, now: &str) -> Vec<u8> {
    let opt = |tag: &str, v: Option<&str>| match v {
        Some(v) if !v.is_empty() => format!("<{tag}>{}</{tag}>", xml_escape(v)),
        _ => String::new(),
    };
    let keywords = doc.metadata.keywords.join(", ");
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
            r#"<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" "#,
            r#"xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" "#,
            r#"xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
            "{title}{subject}{creator}{keywords}",
            "<cp:lastModifiedBy>hs-platform</cp:lastModifiedBy><cp:revision>1</cp:revision>",
            r#"<dcterms:created xsi:type="dcterms:W3CDTF">{now}</dcterms:created>"#,
            r#"<dcterms:modified xsi:type="dcterms:W3CDTF">{now}</dcterms:modified>"#,
            "</cp:coreProperties>"
        ),
        title = opt("dc:title", Some(&doc.title)),
        subject = opt("dc:subject", doc.metadata.subject.as_deref()),
        creator = opt("dc:creator", doc.metadata.author.as_deref()),
        keywords = opt("cp:keywords", Some(&keywords)),
        now = now,
    )
    .into_bytes()
}

fn text_paragraph(text: &str) -> Paragraph {
    // A newline inside the text becomes a line break within the paragraph.
    let mut run = Run::new();
    for (i, line) in clean(text).split('\n').enumerate() {
        if i > 0 {
            run = run.add_break(docx_rs::BreakType::TextWrapping);
        }
        run = run.add_text(line);
    }
    Paragraph::new().add_run(run)
}

/// Renders the document to DOCX bytes.
pub fn render(doc: &Document) -> anyhow::Result<Vec<u8>> {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut docx = numbering_definitions(styles(Docx::new()));

    let (w, h) = match doc.options.page_size {
        PageSize::A4 => (11_906u32, 16_838u32),
        PageSize::Letter => (12_240, 15_840),
    };
    docx = match doc.options.orientation {
        Orientation::Portrait => docx
            .page_size(w, h)
            .page_orient(PageOrientationType::Portrait),
        Orientation::Landscape => docx
            .page_size(h, w)
            .page_orient(PageOrientationType::Landscape),
    };
    let content_twips = match doc.options.orientation {
        Orientation::Portrait => w,
        Orientation::Landscape => h,
    } as usize
        - 2 * 1440;

    docx = docx.add_paragraph(text_paragraph(&doc.title).style("Title"));
    let mut next_num = 1usize;
    for section in &doc.sections {
        match section {
            Section::Heading { text, level } => {
                docx = docx.add_paragraph(
                    text_paragraph(text)
                        .style(&format!("Heading{}", level.clamp(&1, &3)))
                        .keep_next(true),
                );
            }
            Section::Paragraph { text } => {
                docx = docx.add_paragraph(text_paragraph(text).style("Normal"));
            }
            Section::List { items, ordered } => {
                let num_id = next_num;
                next_num += 1;
                let abstract_id = if *ordered {
                    DECIMAL_ABSTRACT
                } else {
                    BULLET_ABSTRACT
                };
                docx = docx.add_numbering(
                    Numbering::new(num_id, abstract_id)
                        .add_override(LevelOverride::new(0).start(1)),
                );
                for item in items {
                    docx = docx.add_paragraph(
                        text_paragraph(item)
                            .style("ListParagraph")
                            .numbering(NumberingId::new(num_id), IndentLevel::new(0)),
                    );
                }
            }
            Section::Table { rows, header } => {
                let cols = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
                let col_w = content_twips / cols;
                let table_rows: Vec<TableRow> = rows
                    .iter()
                    .enumerate()
                    .map(|(r, row)| {
                        let is_header = *header && r == 0;
                        let cells = (0..cols)
                            .map(|c| {
                                let text = row.get(c).map(cell_text).unwrap_or_default();
                                let mut run = Run::new().add_text(clean(&text));
                                if is_header {
                                    run = run.bold();
                                }
                                let mut cell = TableCell::new()
                                    .width(col_w, WidthType::Dxa)
                                    .add_paragraph(Paragraph::new().add_run(run));
                                if is_header {
                                    cell = cell.shading(Shading::new().fill("D9D9D9"));
                                }
                                cell
                            })
                            .collect();
                        TableRow::new(cells).cant_split()
                    })
                    .collect();
                docx = docx.add_table(
                    Table::new(table_rows)
                        .style("TableGrid")
                        .set_grid(vec![col_w; cols])
                        .width(col_w * cols, WidthType::Dxa),
                );
                // Word merges adjacent tables; keep them apart.
                docx = docx.add_paragraph(Paragraph::new().style("Normal"));
            }
        }
    }

    let mut xml = docx.build();
    xml.doc_props.core = core_xml(doc, &now);
    let mut out = Cursor::new(Vec::new());
    xml.pack(&mut out)
        .map_err(|e| anyhow::anyhow!("failed to write the DOCX archive: {e}"))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_properties_are_escaped_xml() {
        let doc: Document = serde_json::from_value(serde_json::json!({
            "title": "A & B <c>",
            "metadata": {"author": "Zoë", "keywords": ["x", "y"]},
            "sections": [{"type": "paragraph", "text": "p"}]
        }))
        .unwrap();
        let xml = String::from_utf8(core_xml(&doc, "2026-01-01T00:00:00Z")).unwrap();
        assert!(xml.contains("<dc:title>A &amp; B &lt;c&gt;</dc:title>"));
        assert!(xml.contains("<dc:creator>Zoë</dc:creator>"));
        assert!(xml.contains("<cp:keywords>x, y</cp:keywords>"));
    }

    #[test]
    fn a_document_renders_to_a_zip() {
        let doc: Document = serde_json::from_value(serde_json::json!({
            "title": "T",
            "sections": [
                {"type": "heading", "text": "H", "level": 2},
                {"type": "list", "items": ["a"], "ordered": true},
                {"type": "table", "rows": [["a", 1]], "header": true}
            ]
        }))
        .unwrap();
        let bytes = render(&doc).unwrap();
        assert!(bytes.starts_with(b"PK"));
    }
}
