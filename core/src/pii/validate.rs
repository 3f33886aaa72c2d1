//! Validators for identifiers whose digits carry structure: payment card
//! numbers (Luhn checksum plus brand prefix and length), IBANs (country
//! length table plus ISO 7064 mod-97), and US social security numbers
//! (area/group/serial rules). Inputs are ASCII digits (cards, SSNs) or an
//! IBAN with spaces already removed.

/// Card brands we recognise, by issuer prefix and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBrand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    DinersClub,
    Jcb,
    UnionPay,
    Maestro,
    Mir,
    RuPay,
    Troy,
    Verve,
}

/// Luhn (mod 10) checksum over ASCII digits; false for anything else.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let v = u32::from(d - b'0');
            if i % 2 == 1 {
                let dbl = v * 2;
                if dbl > 9 {
                    dbl - 9
                } else {
                    dbl
                }
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn prefix_num(digits: &[u8], n: usize) -> Option<u32> {
    digits
        .get(..n)
        .and_then(|p| std::str::from_utf8(p).ok()?.parse().ok())
}

/// The brand whose prefix and length rules `digits` satisfies, if any.
pub fn card_brand(digits: &[u8]) -> Option<CardBrand> {
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = digits.len();
    let p1 = prefix_num(digits, 1)?;
    let p2 = prefix_num(digits, 2)?;
    let p3 = prefix_num(digits, 3).unwrap_or(0);
    let p4 = prefix_num(digits, 4).unwrap_or(0);
    let brand = if p1 == 4 && matches!(len, 13 | 16 | 19) {
        CardBrand::Visa
    } else if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 {
        CardBrand::Mastercard
    } else if (p2 == 34 || p2 == 37) && len == 15 {
        CardBrand::Amex
    } else if (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && (16..=19).contains(&len) {
        CardBrand::Discover
    } else if ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39)
        && (14..=19).contains(&len)
    {
        CardBrand::DinersClub
    } else if ((3528..=3589).contains(&p4) && (16..=19).contains(&len))
        || ((p4 == 2131 || p4 == 1800) && len == 15)
    {
        CardBrand::Jcb
    } else if (2200..=2204).contains(&p4) && (16..=19).contains(&len) {
        CardBrand::Mir
    } else if (p2 == 62 || p2 == 81) && (16..=19).contains(&len) {
        CardBrand::UnionPay
    } else if (p3 == 508 || p2 == 60 || p2 == 82 || p3 == 353 || p3 == 356) && len == 16 {
        CardBrand::RuPay
    } else if p4 == 9792 && len == 16 {
        CardBrand::Troy
    } else if matches!(len, 16 | 18 | 19)
        && prefix_num(digits, 6).is_some_and(|p6| (506099..=506198).contains(&p6))
    {
        CardBrand::Verve
    } else if (p2 == 50 || (56..=69).contains(&p2)) && (12..=19).contains(&len) {
        CardBrand::Maestro
    } else {
        return None;
    };
    Some(brand)
}

/// A payment card number: a known brand's prefix and length, and Luhn-valid.
pub fn card_valid(digits: &[u8]) -> bool {
    card_brand(digits).is_some() && luhn_valid(digits)
}

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN (no spaces): the country's length and the mod-97 check.
pub fn iban_valid(iban: &[u8]) -> bool {
    if iban.len() < 5
        || !iban[..2].iter().all(u8::is_ascii_uppercase)
        || !iban[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    let Some(&(_, want)) = IBAN_LENGTHS.iter().find(|(c, _)| c[..] == iban[..2]) else {
        return false;
    };
    if iban.len() != want
        || !iban
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        return false;
    }
    // Move the first four characters to the end, letters to 10..35, mod 97.
    let mut rem: u32 = 0;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A US SSN given as its 9 digits: area not 000, 666 or 900-999; group not
/// 00; serial not 0000 (SSA rules since randomisation in 2011).
pub fn ssn_valid(digits: &[u8]) -> bool {
    if digits.len() != 9 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = prefix_num(digits, 3).unwrap_or(0);
    let group = prefix_num(&digits[3..], 2).unwrap_or(0);
    let serial = prefix_num(&digits[5..], 4).unwrap_or(0);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_test_card_numbers() {
        for (n, brand) in [
            ("4111111111111111", CardBrand::Visa),
            ("4242424242424242", CardBrand::Visa),
            ("4222222222222", CardBrand::Visa),
            ("5555555555554444", CardBrand::Mastercard),
            ("2223003122003222", CardBrand::Mastercard),
            ("378282246310005", CardBrand::Amex),
            ("371449635398431", CardBrand::Amex),
            ("6011111111111117", CardBrand::Discover),
            ("30569309025904", CardBrand::DinersClub),
            ("3530111333300000", CardBrand::Jcb),
            ("6200000000000005", CardBrand::UnionPay),
        ] {
            assert_eq!(card_brand(n.as_bytes()), Some(brand), "{n}");
            assert!(card_valid(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn look_alikes_are_not_cards() {
        for n in [
            "4111111111111112", // Luhn fails
            "1700000000000000", // no brand, though Luhn-valid digits are easy to find
            "1732012345678",    // a 13-digit epoch in milliseconds
            "411111111111111",  // Visa prefix, 15 digits
            "3782822463100050", // Amex prefix, 16 digits
            "",
            "4111-1111-1111-1111",
        ] {
            assert!(!card_valid(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn ibans() {
        for ok in [
            "GB82WEST12345698765432",
            "DE89370400440532013000",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "NO9386011117947",
            "BE68539007547034",
        ] {
            assert!(iban_valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "GB82WEST12345698765433",
            "GB82WEST1234569876543",
            "XX82WEST12345698765432",
            "gb82WEST12345698765432",
            "DE8937040044053201300O",
            "",
        ] {
            assert!(!iban_valid(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn ssns() {
        assert!(ssn_valid(b"123456789"));
        assert!(ssn_valid(b"899991234"));
        for bad in [
            &b"000123456"[..],
            b"666123456",
            b"900123456",
            b"123006789",
            b"123450000",
            b"12345678",
            b"12345678a",
        ] {
            assert!(!ssn_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        // Appending the right check digit always yields a Luhn-valid number,
        // and changing any single digit always breaks it.
        #[test]
        fn luhn_detects_single_digit_errors(body in proptest::collection::vec(0u8..10, 1..19), pos in any::<prop::sample::Index>(), delta in 1u8..10) {
            let mut digits: Vec<u8> = body.iter().map(|d| b'0' + d).collect();
            let check = (0..10u8).find(|c| { let mut t = digits.clone(); t.push(b'0' + c); luhn_valid(&t) }).unwrap();
            digits.push(b'0' + check);
            prop_assert!(luhn_valid(&digits));
            let i = pos.index(digits.len());
            digits[i] = b'0' + (digits[i] - b'0' + delta) % 10;
            prop_assert!(!luhn_valid(&digits));
        }
    }
}
