//! Throughput of the pure PII scanner and of redaction on 2 KiB texts made
//! of the corpus' real log formats (annotations stripped): one set as
//! written (most lines carry PII), one of only the lines without PII.
//! `make bench` runs it; the README quotes the MiB/s.

use aegis_core::pii::{find_iter, has_pii, redact, KindSet, Style};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;

/// Corpus lines with «KIND:value» annotations replaced by their values.
fn corpus_lines() -> (Vec<String>, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        // Strip annotations over the whole file (a PEM block spans lines),
        // remembering which output bytes were labelled.
        let raw = std::fs::read_to_string(p).unwrap();
        let mut text = String::new();
        let mut labelled = Vec::new();
        let mut rest = raw.as_str();
        while let Some(o) = rest.find('«') {
            text.push_str(&rest[..o]);
            labelled.resize(text.len(), false);
            let after = &rest[o + '«'.len_utf8()..];
            let c = after.find('»').unwrap();
            text.push_str(after[..c].split_once(':').unwrap().1);
            labelled.resize(text.len(), true);
            rest = &after[c + '»'.len_utf8()..];
        }
        text.push_str(rest);
        labelled.resize(text.len(), false);
        let mut pos = 0;
        for line in text.split('\n') {
            let has = labelled[pos..pos + line.len()].iter().any(|&b| b);
            pos += line.len() + 1;
            if line.starts_with("##") || line.trim().is_empty() || line == "<<<" || line == ">>>" {
                continue;
            }
            if has {
                with.push(line.to_string())
            } else {
                without.push(line.to_string())
            }
        }
    }
    (with, without)
}

/// Texts of about `size` bytes built from consecutive lines.
fn texts(lines: &[String], size: usize, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = lines.iter().cycle();
    for _ in 0..count {
        let mut t = String::new();
        while t.len() < size {
            t.push_str(it.next().unwrap());
            t.push('\n');
        }
        let mut cut = size.min(t.len());
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        out.push(t);
    }
    out
}

fn bench(c: &mut Criterion) {
    let (with, without) = corpus_lines();
    let mixed: Vec<String> = with.iter().chain(without.iter()).cloned().collect();
    for (name, lines) in [("mixed", &mixed), ("pii_free", &without)] {
        let set = texts(lines, 2048, 256);
        let bytes: usize = set.iter().map(String::len).sum();
        let mut g = c.benchmark_group(format!("2KiB_{name}"));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("find_iter", |b| {
            b.iter(|| {
                set.iter()
                    .map(|t| find_iter(black_box(t.as_bytes())).count())
                    .sum::<usize>()
            })
        });
        g.bench_function("has_pii", |b| {
            b.iter(|| {
                set.iter()
                    .filter(|t| has_pii(black_box(t.as_bytes())))
                    .count()
            })
        });
        g.bench_function("redact_tag", |b| {
            b.iter_batched(
                || (),
                |_| {
                    set.iter()
                        .map(|t| {
                            redact(black_box(t.as_bytes()), KindSet::ALL, Style::Tag, |_, _| {
                                Ok::<_, ()>(String::new())
                            })
                            .unwrap()
                            .len()
                        })
                        .sum::<usize>()
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
