//! Run the PII scanner over the accuracy corpus (benches/pii_accuracy).
//!
//! Reads JSONL `{"id": n, "text": "..."}` on stdin, writes JSONL predictions
//! `{"id": n, "spans": [{"start": s, "end": e, "kind": "EMAIL"}]}` on stdout,
//! with offsets in characters (code points), end exclusive, like the corpus.
//! Prints the scan throughput on stderr: the corpus is scanned again until a
//! second has passed, counting only `find_iter` (no JSON, no offset mapping).
//!
//!     cargo run --release -q -p aegis-core --example pii_eval < corpus.jsonl > preds.jsonl

use aegis_core::pii;
use serde_json::{json, Value};
use std::io::{self, BufRead, BufWriter, Write};
use std::time::{Duration, Instant};

/// Character offset of byte offset `b`: the number of characters that start
/// before it. A byte offset inside a character counts that character, so a
/// span never loses a partly covered character.
fn char_offset(text: &[u8], b: usize) -> usize {
    text[..b.min(text.len())]
        .iter()
        .filter(|&&c| (c as i8) >= -0x40)
        .count()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rows: Vec<(Value, String)> = Vec::new();
    for line in io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)?;
        let text = v["text"]
            .as_str()
            .ok_or("a corpus line without text")?
            .to_owned();
        rows.push((v["id"].clone(), text));
    }

    let out = io::stdout();
    let mut out = BufWriter::new(out.lock());
    for (id, text) in &rows {
        let bytes = text.as_bytes();
        let spans: Vec<Value> = pii::find_iter(bytes)
            .map(|m| {
                json!({
                    "start": char_offset(bytes, m.start),
                    "end": char_offset(bytes, m.end),
                    // name(), never a match over the enum: new kinds just show up.
                    "kind": m.kind.name(),
                })
            })
            .collect();
        serde_json::to_writer(&mut out, &json!({ "id": id, "spans": spans }))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;

    let total: usize = rows.iter().map(|(_, t)| t.len()).sum();
    let mut passes = 0u32;
    let mut found = 0usize;
    let start = Instant::now();
    while passes < 3 || start.elapsed() < Duration::from_secs(1) {
        for (_, text) in &rows {
            found += pii::find_iter(std::hint::black_box(text.as_bytes())).count();
        }
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "aegis: {} lines, {:.2} MB, {} spans per pass; {} passes in {:.2} s: {:.1} MB/s",
        rows.len(),
        total as f64 / 1e6,
        found / passes as usize,
        passes,
        secs,
        total as f64 * passes as f64 / secs / 1e6
    );
    Ok(())
}
