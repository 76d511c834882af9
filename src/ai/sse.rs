//! An incremental Server-Sent Events parser for upstream streams: bytes go in
//! as they arrive (split anywhere, even inside a UTF-8 character), complete
//! events come out.

/// One event: its `event:` name (empty when absent) and its `data:` lines
/// joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

/// The largest event accepted; a longer one means a broken upstream.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the events it completed. `Err` when one event
    /// grows beyond [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, &'static str> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some((end, skip)) = find_boundary(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..end + skip).take(end).collect();
            if let Some(ev) = parse_event(&String::from_utf8_lossy(&raw)) {
                events.push(ev);
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err("an upstream event exceeded the size limit");
        }
        Ok(events)
    }

    /// Whether unparsed bytes remain (an event cut off by the end of stream).
    pub fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// Position of the first blank line (`\n\n`, `\r\n\r\n`, `\r\r`) and its length.
fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'\n' if buf.get(i + 1) == Some(&b'\n') => return Some((i, 2)),
            b'\r' if buf.get(i + 1) == Some(&b'\n') => {
                if buf.get(i + 2) == Some(&b'\r') && buf.get(i + 3) == Some(&b'\n') {
                    return Some((i, 4));
                }
                if buf.get(i + 2) == Some(&b'\n') {
                    return Some((i, 3));
                }
                i += 2;
                continue;
            }
            b'\r' if buf.get(i + 1) == Some(&b'\r') => return Some((i, 2)),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_event(block: &str) -> Option<SseEvent> {
    let mut event = String::new();
    let mut data: Vec<&str> = Vec::new();
    for line in block.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() && event.is_empty() {
        return None;
    }
    Some(SseEvent {
        event,
        data: data.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let stream = "event: message_start\ndata: {\"a\":1}\n\n: comment\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n";
        for split in 0..stream.len() {
            let mut p = SseParser::new();
            let mut events = p.push(&stream.as_bytes()[..split]).unwrap();
            events.extend(p.push(&stream.as_bytes()[split..]).unwrap());
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: "message_start".into(),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: "ping".into(),
                        data: "{\"type\": \"ping\"}".into()
                    },
                ],
                "split at {split}"
            );
            assert!(!p.has_partial());
        }
    }

    #[test]
    fn crlf_line_endings_and_multiline_data_are_understood() {
        let mut p = SseParser::new();
        let events = p
            .push(b"event: x\r\ndata: one\r\ndata: two\r\n\r\nevent: y\r\ndata: 3\r\n\r\n")
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "one\ntwo");
        assert_eq!(events[1].event, "y");
    }

    #[test]
    fn a_multibyte_character_split_between_chunks_survives() {
        let text = "data: {\"t\":\"héllo ✓\"}\n\n".as_bytes();
        let cut = text.iter().position(|&b| b == 0xE2).unwrap() + 1;
        let mut p = SseParser::new();
        assert!(p.push(&text[..cut]).unwrap().is_empty());
        let ev = p.push(&text[cut..]).unwrap();
        assert_eq!(ev[0].data, "{\"t\":\"héllo ✓\"}");
    }

    #[test]
    fn an_unterminated_event_is_reported_as_partial() {
        let mut p = SseParser::new();
        assert!(p.push(b"event: message_stop\ndata: {}").unwrap().is_empty());
        assert!(p.has_partial());
    }
}
