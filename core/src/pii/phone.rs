//! Phone number facts the scanner checks candidates against: the country
//! calling codes of the world's numbering plans (ITU-T E.164, as
//! libphonenumber's metadata lists them: a test compares this table with the
//! `phonenumber` crate's), extensions, and the words that make a bare digit
//! run a phone number.

/// Every assigned country calling code (libphonenumber metadata 9.0).
const CALLING_CODES: [u16; 215] = [
    1, 7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54,
    55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98, 211,
    212, 213, 216, 218, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234,
    235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253,
    254, 255, 256, 257, 258, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 290, 291, 297, 298,
    299, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 370, 371, 372, 373, 374, 375, 376, 377,
    378, 380, 381, 382, 383, 385, 386, 387, 389, 420, 421, 423, 500, 501, 502, 503, 504, 505, 506,
    507, 508, 509, 590, 591, 592, 593, 594, 595, 596, 597, 598, 599, 670, 672, 673, 674, 675, 676,
    677, 678, 679, 680, 681, 682, 683, 685, 686, 687, 688, 689, 690, 691, 692, 800, 808, 850, 852,
    853, 855, 856, 870, 878, 880, 881, 882, 883, 886, 888, 960, 961, 962, 963, 964, 965, 966, 967,
    968, 970, 971, 972, 973, 974, 975, 976, 977, 979, 992, 993, 994, 995, 996, 998,
];

/// Whether `code` is an assigned country calling code.
pub fn is_calling_code(code: u16) -> bool {
    CALLING_CODES.binary_search(&code).is_ok()
}

/// The length of the calling code the ASCII digits `d` start with (codes
/// are prefix-free: at most one of 1, 2 or 3 digits matches).
pub fn calling_code_len(d: &[u8]) -> Option<usize> {
    let mut v: u16 = 0;
    for (n, &b) in d.iter().take(3).enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u16::from(b - b'0');
        if is_calling_code(v) {
            return Some(n + 1);
        }
    }
    None
}

/// An extension right after a number ending at `e`: `x236`, ` x 236`,
/// `ext 12`, ` ext. 12`, `#12`, ` extension 12` (1-6 digits, then no more
/// word). Returns where it ends. The number before it is reported without
/// it (an extension alone identifies no one; the corpus convention).
pub fn extension_after(s: &[u8], e: usize) -> Option<usize> {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut j = e;
    if at(j) == b' ' {
        j += 1;
    }
    let rest = &s[j.min(s.len())..];
    let lower = |k: usize| rest.get(k).map(u8::to_ascii_lowercase).unwrap_or(0);
    let word = if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"extension") {
        9
    } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"ext") {
        3
    } else if lower(0) == b'x' || rest.first() == Some(&b'#') {
        1
    } else {
        return None;
    };
    j += word;
    if word == 3 && at(j) == b'.' {
        j += 1;
    }
    if matches!(at(j), b' ' | b':') {
        j += 1;
    }
    let d = j + s[j.min(s.len())..]
        .iter()
        .take(7)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let n = d - j;
    ((1..=6).contains(&n) && !(at(d).is_ascii_alphanumeric() || at(d) == b'_')).then_some(d)
}

/// Words that make a bare digit run (`Paging on-call at 9575472073`) a
/// phone number, in the languages of the corpus (English, German, French,
/// Dutch, Spanish), lower case, letters only (accents dropped: `teléfono`
/// is read as `telfono`).
const CONTEXT_WORDS: [&[u8]; 35] = [
    b"call",
    b"called",
    b"calling",
    b"callback",
    b"phone",
    b"tel",
    b"telephone",
    b"mobile",
    b"cell",
    b"fax",
    b"sms",
    b"paging",
    b"pager",
    b"contact",
    b"whatsapp",
    b"dial",
    b"telefon",
    b"handy",
    b"rufnummer",
    b"anrufen",
    b"mobil",
    b"tlphone",
    b"portable",
    b"appeler",
    b"appelez",
    b"telefoon",
    b"bellen",
    b"mobiel",
    b"telfono",
    b"telefono",
    b"mvil",
    b"movil",
    b"llamar",
    b"llame",
    b"hotline",
];

/// Whether the lowercased letters `w` are a phone context word.
pub fn is_context_word(w: &[u8]) -> bool {
    CONTEXT_WORDS.contains(&w) || w.ends_with(b"phone") || w.ends_with(b"mobile")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_codes_are_libphonenumbers() {
        let db = &*phonenumber::metadata::DATABASE;
        let theirs: Vec<u16> = (1u16..1000).filter(|c| db.by_code(c).is_some()).collect();
        assert_eq!(theirs, CALLING_CODES.to_vec());
        assert!(CALLING_CODES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(calling_code_len(b"4420"), Some(2));
        assert_eq!(calling_code_len(b"18195"), Some(1));
        assert_eq!(calling_code_len(b"35312"), Some(3));
        assert_eq!(calling_code_len(b"2590"), None);
    }

    #[test]
    fn extensions() {
        for (s, end) in [
            ("x236", Some(4)),
            (" x 236", Some(6)),
            ("ext 12", Some(6)),
            (" ext. 12", Some(8)),
            ("#12", Some(3)),
            (" extension 12", Some(13)),
            ("x1234567", None),
            ("xyz", None),
            (" x86_64", None),
            ("", None),
        ] {
            assert_eq!(extension_after(s.as_bytes(), 0), end, "{s:?}");
        }
    }
}
