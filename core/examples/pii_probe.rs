//! Print the PII spans the scanner finds in each argument:
//! `cargo run -q -p aegis-core --example pii_probe -- "call 555-123-4567"`.
fn main() {
    for a in std::env::args().skip(1) {
        let spans: Vec<_> = aegis_core::pii::find_iter(a.as_bytes())
            .map(|m| (m.kind.name(), &a[m.start..m.end]))
            .collect();
        println!("{a:?} -> {spans:?}");
    }
}
