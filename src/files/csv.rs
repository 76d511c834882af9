//! CSV rendering: a pure function of a validated [`CsvRequest`], with RFC
//! 4180 quoting by the `csv` crate, an optional UTF-8 BOM, and cells that a
//! spreadsheet would run as formulas neutralised.

use serde_json::Value;

use super::model::CsvRequest;

/// Cells starting with one of these are formulas to Excel, LibreOffice and
/// Google Sheets (OWASP "CSV injection"); they are prefixed with `'`.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Returns the cell as a spreadsheet will read it as text.
pub fn neutralize(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

fn cell_string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Renders the CSV. Numbers are written as JSON writes them and are never
/// neutralised (a negative number stays a number); strings are.
pub fn render(req: &CsvRequest) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + req.rows.len() * req.columns.len() * 8);
    if req.bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    let header: Vec<String> = req
        .columns
        .iter()
        .map(|c| neutralize(c.title.as_deref().unwrap_or(&c.key)).into_owned())
        .collect();
    w.write_record(&header)?;
    let mut record: Vec<String> = Vec::with_capacity(req.columns.len());
    for row in &req.rows {
        record.clear();
        for (i, col) in req.columns.iter().enumerate() {
            let v = match row {
                Value::Object(map) => map.get(&col.key),
                Value::Array(items) => items.get(i),
                _ => None,
            };
            let s = cell_string(v);
            let s = if matches!(v, Some(Value::String(_))) {
                neutralize(&s).into_owned()
            } else {
                s
            };
            record.push(s);
        }
        w.write_record(&record)?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> CsvRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn formula_cells_are_neutralised_but_numbers_are_not() {
        let r = req(json!({
            "columns": [{"key": "a", "title": "A"}, {"key": "b"}],
            "rows": [{"a": "=1+2", "b": -5}, ["@SUM(A1)", "+x"], {"a": "\tx", "b": "-y"}]
        }));
        let bytes = render(&r).unwrap();
        let mut rd = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(rd.headers().unwrap(), vec!["A", "b"]);
        let rows: Vec<Vec<String>> = rd
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        assert_eq!(rows[0], vec!["'=1+2", "-5"]);
        assert_eq!(rows[1], vec!["'@SUM(A1)", "'+x"]);
        assert_eq!(rows[2], vec!["'\tx", "'-y"]);
    }

    #[test]
    fn quoting_unicode_and_bom_survive_a_round_trip() {
        let r = req(json!({
            "columns": [{"key": "k"}, {"key": "v"}],
            "rows": [{"k": "a,b", "v": "line\nbreak \"q\""}, {"k": "ελληνικά", "v": null}],
            "bom": true
        }));
        let bytes = render(&r).unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
        let mut rd = csv::Reader::from_reader(&bytes[3..]);
        let rows: Vec<Vec<String>> = rd
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        assert_eq!(rows[0], vec!["a,b", "line\nbreak \"q\""]);
        assert_eq!(rows[1], vec!["ελληνικά", ""]);
    }
}
