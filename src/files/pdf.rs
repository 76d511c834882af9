//! PDF rendering with printpdf's operations API: a pure function of a
//! validated [`Document`]. printpdf does no layout at this level, so this
//! module measures glyphs, wraps lines, flows blocks across pages (tables
//! repeat their header row), and numbers the pages. Text is shown in an
//! embedded TrueType font (DejaVu Sans, bundled in the binary) so that any
//! Unicode text is real, extractable text; characters DejaVu lacks (CJK)
//! fall back per glyph to a second font when one is configured.

use std::path::Path;

use anyhow::Context;
use printpdf::{
    Color, FontId, Greyscale, Mm, Op, PaintMode, ParsedFont, PdfDocument, PdfFontHandle, PdfPage,
    PdfSaveOptions, Point, Pt, Rect, TextItem,
};

use super::model::{Document, Section, cell_text};

/// Fonts the renderer uses, parsed once.
pub struct Fonts {
    regular: ParsedFont,
    bold: ParsedFont,
    fallback: Option<ParsedFont>,
}

/// Where Debian's `fonts-droid-fallback` puts its CJK font.
const DROID_FALLBACK: &str = "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf";

impl Fonts {
    /// DejaVu Sans (regular and bold) from the binary, plus a fallback font
    /// for CJK: `FONT_PATH` when set, else Debian's Droid Sans Fallback if it
    /// is installed.
    pub fn load(font_path: Option<&Path>) -> anyhow::Result<Self> {
        let regular = parse(dejavu::sans::regular()).context("failed to parse DejaVu Sans")?;
        let bold = parse(dejavu::sans::bold()).context("failed to parse DejaVu Sans Bold")?;
        let fallback_path = match font_path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(Path::new(DROID_FALLBACK).to_path_buf()).filter(|p| p.exists()),
        };
        let fallback = match fallback_path {
            Some(p) => {
                let bytes = std::fs::read(&p)
                    .with_context(|| format!("FONT_PATH: cannot read {}", p.display()))?;
                Some(parse(&bytes).with_context(|| {
                    format!("FONT_PATH: {} is not a usable TrueType font", p.display())
                })?)
            }
            None => None,
        };
        Ok(Self {
            regular,
            bold,
            fallback,
        })
    }

    pub fn has_fallback(&self) -> bool {
        self.fallback.is_some()
    }
}

fn parse(bytes: &[u8]) -> anyhow::Result<ParsedFont> {
    ParsedFont::from_bytes(bytes, 0, &mut Vec::new())
        .ok_or_else(|| anyhow::anyhow!("font did not parse"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Face {
    Regular,
    Bold,
    Fallback,
}

struct Ctx<'a> {
    fonts: &'a Fonts,
    regular: FontId,
    bold: FontId,
    fallback: Option<FontId>,
}

impl Ctx<'_> {
    fn parsed(&self, face: Face) -> &ParsedFont {
        match face {
            Face::Regular => &self.fonts.regular,
            Face::Bold => &self.fonts.bold,
            Face::Fallback => self.fonts.fallback.as_ref().unwrap_or(&self.fonts.regular),
        }
    }

    fn id(&self, face: Face) -> FontId {
        match face {
            Face::Regular => self.regular.clone(),
            Face::Bold => self.bold.clone(),
            Face::Fallback => self
                .fallback
                .clone()
                .unwrap_or_else(|| self.regular.clone()),
        }
    }

    /// The face that shows `c`: the wanted one, else the fallback if it has
    /// the glyph.
    fn face_for(&self, c: char, wanted: Face) -> Face {
        let font = self.parsed(wanted);
        if font.lookup_glyph_index(c as u32).is_some_and(|g| g != 0) {
            return wanted;
        }
        if let Some(fb) = &self.fonts.fallback
            && fb.lookup_glyph_index(c as u32).is_some_and(|g| g != 0)
        {
            return Face::Fallback;
        }
        wanted
    }

    fn char_width(&self, c: char, wanted: Face, size: f32) -> f32 {
        let face = self.face_for(c, wanted);
        let font = self.parsed(face);
        let upem = f32::from(font.units_per_em.max(1));
        let w = font
            .lookup_glyph_index(c as u32)
            .and_then(|g| font.get_glyph_width(g))
            .unwrap_or(font.units_per_em / 2);
        f32::from(w) / upem * size
    }

    fn text_width(&self, s: &str, face: Face, size: f32) -> f32 {
        s.chars().map(|c| self.char_width(c, face, size)).sum()
    }

    /// Greedy word wrap to `width` points; words wider than a line (and
    /// scripts without spaces) break between characters.
    fn wrap(&self, text: &str, face: Face, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for para in text.split('\n') {
            let mut line = String::new();
            let mut line_w = 0.0;
            let space = self.char_width(' ', face, size);
            for word in para.split_whitespace() {
                let word_w = self.text_width(word, face, size);
                let sep = if line.is_empty() { 0.0 } else { space };
                if line_w + sep + word_w <= width {
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(word);
                    line_w += sep + word_w;
                    continue;
                }
                if word_w <= width {
                    lines.push(std::mem::take(&mut line));
                    line.push_str(word);
                    line_w = word_w;
                    continue;
                }
                // Break the long word character by character.
                if !line.is_empty() {
                    line.push(' ');
                    line_w += space;
                }
                for c in word.chars() {
                    let cw = self.char_width(c, face, size);
                    if line_w + cw > width && !line.is_empty() {
                        lines.push(std::mem::take(&mut line));
                        line_w = 0.0;
                    }
                    line.push(c);
                    line_w += cw;
                }
            }
            lines.push(line);
        }
        lines
    }

    /// Operations that show one line of text with its baseline at (x, y),
    /// switching fonts per run of characters.
    fn line_ops(&self, ops: &mut Vec<Op>, text: &str, face: Face, size: f32, x: f32, y: f32) {
        if text.is_empty() {
            return;
        }
        ops.push(Op::StartTextSection);
        ops.push(Op::SetTextCursor {
            pos: Point { x: Pt(x), y: Pt(y) },
        });
        let mut run = String::new();
        let mut run_face: Option<Face> = None;
        for c in text.chars() {
            let f = self.face_for(c, face);
            if run_face.is_some_and(|rf| rf != f) {
                self.show(ops, &run, run_face.unwrap_or(face), size);
                run.clear();
            }
            run_face = Some(f);
            run.push(c);
        }
        if !run.is_empty() {
            self.show(ops, &run, run_face.unwrap_or(face), size);
        }
        ops.push(Op::EndTextSection);
    }

    fn show(&self, ops: &mut Vec<Op>, text: &str, face: Face, size: f32) {
        ops.push(Op::SetFont {
            font: PdfFontHandle::External(self.id(face)),
            size: Pt(size),
        });
        ops.push(Op::ShowText {
            items: vec![TextItem::Text(text.to_string())],
        });
    }
}

const MARGIN: f32 = 56.7; // 20 mm
const FOOTER: f32 = 28.35; // 10 mm
const BODY: f32 = 11.0;
const LEADING: f32 = 1.35;
const CELL_PAD: f32 = 4.0;

/// Lays out pages top to bottom.
struct Layout<'a> {
    ctx: Ctx<'a>,
    page_w: f32,
    page_h: f32,
    pages: Vec<Vec<Op>>,
    /// Distance of the next line's top from the page bottom.
    y: f32,
}

/// Sets the fill colour to a grey (`percent` 0 = black, 1 = white).
fn grey_fill(percent: f32) -> Op {
    Op::SetFillColor {
        col: Color::Greyscale(Greyscale {
            percent,
            icc_profile: None,
        }),
    }
}

impl Layout<'_> {
    fn content_width(&self) -> f32 {
        self.page_w - 2.0 * MARGIN
    }

    fn top(&self) -> f32 {
        self.page_h - MARGIN
    }

    fn bottom(&self) -> f32 {
        MARGIN
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        self.pages.last_mut().expect("a page")
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = self.top();
    }

    /// Makes room for `h` points, starting a page if needed (unless the page
    /// is still empty, where nothing more can be gained).
    fn ensure(&mut self, h: f32) {
        if self.y - h < self.bottom() && self.y < self.top() {
            self.new_page();
        }
    }

    fn text_block(&mut self, text: &str, face: Face, size: f32, indent: f32, gap_after: f32) {
        let width = self.content_width() - indent;
        let lines = self.ctx.wrap(text, face, size, width);
        let lh = size * LEADING;
        for line in lines {
            self.ensure(lh);
            let baseline = self.y - size;
            let x = MARGIN + indent;
            let mut ops = std::mem::take(self.ops());
            self.ctx.line_ops(&mut ops, &line, face, size, x, baseline);
            *self.ops() = ops;
            self.y -= lh;
        }
        self.y -= gap_after;
    }

    fn list(&mut self, items: &[String], ordered: bool) {
        let size = BODY;
        let lh = size * LEADING;
        let indent = 22.0;
        for (i, item) in items.iter().enumerate() {
            let marker = if ordered {
                format!("{}.", i + 1)
            } else {
                "\u{2022}".to_string()
            };
            let lines = self
                .ctx
                .wrap(item, Face::Regular, size, self.content_width() - indent);
            for (j, line) in lines.iter().enumerate() {
                self.ensure(lh);
                let baseline = self.y - size;
                let mut ops = std::mem::take(self.ops());
                if j == 0 {
                    self.ctx.line_ops(
                        &mut ops,
                        &marker,
                        Face::Regular,
                        size,
                        MARGIN + 6.0,
                        baseline,
                    );
                }
                self.ctx.line_ops(
                    &mut ops,
                    line,
                    Face::Regular,
                    size,
                    MARGIN + indent,
                    baseline,
                );
                *self.ops() = ops;
                self.y -= lh;
            }
        }
        self.y -= size * 0.6;
    }

    fn table(&mut self, rows: &[Vec<serde_json::Value>], header: bool) {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let size = BODY - 1.0;
        let lh = size * LEADING;
        let total_w = self.content_width();
        // Column widths: proportional to the longest text in each column,
        // with a floor so that no column collapses.
        let mut weights = vec![1.0f32; cols];
        for row in rows {
            for (c, cell) in row.iter().enumerate() {
                let n = cell_text(cell).chars().count().min(60) as f32;
                weights[c] = weights[c].max(n);
            }
        }
        let sum: f32 = weights.iter().sum();
        let floor = total_w / cols as f32 * 0.35;
        let mut widths: Vec<f32> = weights
            .iter()
            .map(|w| (w / sum * total_w).max(floor))
            .collect();
        let scale = total_w / widths.iter().sum::<f32>();
        widths.iter_mut().for_each(|w| *w *= scale);

        let max_lines = (((self.top() - self.bottom()) - 2.0 * CELL_PAD) / lh)
            .floor()
            .max(1.0) as usize;
        let layout_row = |ctx: &Ctx, row: &[serde_json::Value], face: Face| -> Vec<Vec<String>> {
            (0..cols)
                .map(|c| {
                    let text = row.get(c).map(cell_text).unwrap_or_default();
                    let mut lines = ctx.wrap(&text, face, size, widths[c] - 2.0 * CELL_PAD);
                    if lines.len() > max_lines {
                        lines.truncate(max_lines);
                        if let Some(last) = lines.last_mut() {
                            last.push('\u{2026}');
                        }
                    }
                    lines
                })
                .collect()
        };
        let header_cells = if header {
            rows.first().map(|r| layout_row(&self.ctx, r, Face::Bold))
        } else {
            None
        };
        let body_start = usize::from(header);
        if let Some(h) = &header_cells {
            let hh = row_height(h, lh);
            self.ensure(hh);
            self.draw_row(h, &widths, Face::Bold, size, lh, true);
        }
        for row in rows.iter().skip(body_start) {
            let cells = layout_row(&self.ctx, row, Face::Regular);
            let h = row_height(&cells, lh);
            if self.y - h < self.bottom() {
                self.new_page();
                if let Some(hc) = &header_cells {
                    self.draw_row(hc, &widths, Face::Bold, size, lh, true);
                }
            }
            self.draw_row(&cells, &widths, Face::Regular, size, lh, false);
        }
        self.y -= BODY * 0.8;
    }

    fn draw_row(
        &mut self,
        cells: &[Vec<String>],
        widths: &[f32],
        face: Face,
        size: f32,
        lh: f32,
        shaded: bool,
    ) {
        let h = row_height(cells, lh);
        let top = self.y;
        let mut x = MARGIN;
        let mut ops = std::mem::take(self.ops());
        for (c, lines) in cells.iter().enumerate() {
            let w = widths[c];
            if shaded {
                ops.push(grey_fill(0.9));
                ops.push(Op::DrawRectangle {
                    rectangle: Rect {
                        mode: Some(PaintMode::Fill),
                        ..Rect::from_xywh(Pt(x), Pt(top - h), Pt(w), Pt(h))
                    },
                });
                ops.push(grey_fill(0.0));
            }
            ops.push(Op::DrawRectangle {
                rectangle: Rect {
                    mode: Some(PaintMode::Stroke),
                    ..Rect::from_xywh(Pt(x), Pt(top - h), Pt(w), Pt(h))
                },
            });
            for (i, line) in lines.iter().enumerate() {
                let baseline = top - CELL_PAD - size - i as f32 * lh;
                self.ctx
                    .line_ops(&mut ops, line, face, size, x + CELL_PAD, baseline);
            }
            x += w;
        }
        *self.ops() = ops;
        self.y -= h;
    }
}

fn row_height(cells: &[Vec<String>], lh: f32) -> f32 {
    let lines = cells.iter().map(Vec::len).max().unwrap_or(1).max(1);
    lines as f32 * lh + 2.0 * CELL_PAD
}

/// Renders the document to PDF bytes.
pub fn render(doc: &Document, fonts: &Fonts) -> anyhow::Result<Vec<u8>> {
    let mut pdf = PdfDocument::new(&doc.title);
    let regular = pdf.add_font(&fonts.regular);
    let bold = pdf.add_font(&fonts.bold);
    let fallback = fonts.fallback.as_ref().map(|f| pdf.add_font(f));
    let info = &mut pdf.metadata.info;
    info.author = doc.metadata.author.clone().unwrap_or_default();
    info.subject = doc.metadata.subject.clone().unwrap_or_default();
    info.keywords = doc.metadata.keywords.clone();
    info.creator = "hs-platform".into();
    info.producer = "hs-platform (printpdf)".into();
    let now = printpdf::OffsetDateTime::now_utc();
    info.creation_date = now;
    info.modification_date = now;
    info.metadata_date = now;

    let (w_mm, h_mm) = doc.options.page_mm();
    let page_w = Pt::from(Mm(w_mm)).0;
    let page_h = Pt::from(Mm(h_mm)).0;
    let mut layout = Layout {
        ctx: Ctx {
            fonts,
            regular,
            bold,
            fallback,
        },
        page_w,
        page_h,
        pages: Vec::new(),
        y: 0.0,
    };
    layout.new_page();
    layout.text_block(&doc.title, Face::Bold, 22.0, 0.0, 10.0);
    for section in &doc.sections {
        match section {
            Section::Heading { text, level } => {
                let size = match level {
                    1 => 17.0,
                    2 => 14.5,
                    _ => 12.5,
                };
                // Keep a heading with at least two lines of what follows.
                layout.ensure(size * LEADING + 2.0 * BODY * LEADING + 6.0);
                layout.y -= 6.0;
                layout.text_block(text, Face::Bold, size, 0.0, 3.0);
            }
            Section::Paragraph { text } => {
                layout.text_block(text, Face::Regular, BODY, 0.0, BODY * 0.6)
            }
            Section::List { items, ordered } => layout.list(items, *ordered),
            Section::Table { rows, header } => layout.table(rows, *header),
        }
    }

    let total = layout.pages.len();
    let mut pages = Vec::with_capacity(total);
    let page_ops = std::mem::take(&mut layout.pages);
    for (i, mut ops) in page_ops.into_iter().enumerate() {
        let label = format!("Page {} of {}", i + 1, total);
        let size = 9.0;
        let w = layout.ctx.text_width(&label, Face::Regular, size);
        layout.ctx.line_ops(
            &mut ops,
            &label,
            Face::Regular,
            size,
            (page_w - w) / 2.0,
            FOOTER,
        );
        pages.push(PdfPage::new(Mm(w_mm), Mm(h_mm), ops));
    }
    pdf.with_pages(pages);
    let opts = PdfSaveOptions {
        subset_fonts: true,
        ..Default::default()
    };
    Ok(pdf.save(&opts, &mut Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fonts() -> Fonts {
        Fonts::load(None).unwrap()
    }

    #[test]
    fn wrapping_respects_the_width_and_keeps_every_word() {
        let f = fonts();
        let mut pdf = PdfDocument::new("t");
        let ctx = Ctx {
            fonts: &f,
            regular: pdf.add_font(&f.regular),
            bold: pdf.add_font(&f.bold),
            fallback: None,
        };
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        let lines = ctx.wrap(&text, Face::Regular, 11.0, 200.0);
        assert!(lines.len() > 5);
        for l in &lines {
            assert!(
                ctx.text_width(l, Face::Regular, 11.0) <= 200.0 + 0.01,
                "{l}"
            );
        }
        assert_eq!(
            lines.join(" ").split_whitespace().count(),
            text.split_whitespace().count()
        );
        let long = "x".repeat(500);
        let lines = ctx.wrap(&long, Face::Regular, 11.0, 100.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), long);
    }

    #[test]
    fn a_document_renders_to_a_pdf() {
        let doc: Document = serde_json::from_value(serde_json::json!({
            "title": "Ünïcödé Ελληνικά",
            "sections": [
                {"type": "heading", "text": "One", "level": 1},
                {"type": "paragraph", "text": "Hello"},
                {"type": "list", "items": ["a", "b"], "ordered": true},
                {"type": "table", "rows": [["h1", "h2"], [1, true]], "header": true}
            ]
        }))
        .unwrap();
        let bytes = render(&doc, &fonts()).unwrap();
        assert!(bytes.starts_with(b"%PDF-"));
    }
}
