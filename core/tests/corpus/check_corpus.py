#!/usr/bin/env python3
"""Self-check for the hand-labeled PII corpus (see README.md).

Usage:  python3 check_corpus.py [--lint] [--quiet]

Errors (exit status 1):
  * malformed `<<<` / `>>>` blocks, unbalanced « », unknown KIND
  * CREDIT_CARD that fails Luhn or has no brand prefix/length
  * IBAN that fails mod-97 or has a wrong length for its country
  * values that are syntactically not what their KIND says (bad IPv4/IPv6,
    MAC, SSN rule violations, JWT header that is not base64url JSON, ...)

--lint additionally scans the UNANNOTATED text of every record for things
that look like PII and prints them as warnings, so a human can confirm each
one is an intended look-alike (it does not fail the run).

Prints per-kind counts, records per file and totals.
"""
import base64
import ipaddress
import json
import os
import re
import sys
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["EMAIL", "IPV4", "IPV6", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN",
         "MAC_ADDRESS", "JWT", "SECRET"]
ANN = re.compile(r"«([^:«»]*):([^«»]*)»", re.S)

IBAN_LEN = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def luhn_ok(d):
    s = 0
    for i, ch in enumerate(reversed(d)):
        n = int(ch)
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        s += n
    return s % 10 == 0


def card_brand(d):
    n = len(d)
    p2, p3, p4 = int(d[:2]), int(d[:3]), int(d[:4])
    if d[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (d.startswith("6011") or 644 <= p3 <= 649 or p2 == 65) and n in (16, 19):
        return "discover"
    if (p2 in (36, 38) or 300 <= p3 <= 305) and n == 14:
        return "diners"
    if 3528 <= p4 <= 3589 and n == 16:
        return "jcb"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    if d[:4] in ("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763") \
            and 12 <= n <= 19:
        return "maestro"
    return None


def card_ok(v):
    if not re.fullmatch(r"\d+(?:[ -]\d+)*", v):
        return False
    if " " in v and "-" in v:
        return False
    d = re.sub(r"[ -]", "", v)
    return 13 <= len(d) <= 19 and luhn_ok(d) and card_brand(d) is not None


def iban_ok(v):
    if " " in v:
        groups = v.split(" ")
        if any(len(g) != 4 for g in groups[:-1]) or not 1 <= len(groups[-1]) <= 4:
            return False
    s = v.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s):
        return False
    if IBAN_LEN.get(s[:2]) != len(s):
        return False
    r = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in r)) % 97 == 1


def ssn_ok(v):
    d = re.sub(r"[ -]", "", v)
    if not re.fullmatch(r"\d{3}([- ]?)\d{2}\1\d{4}", v):
        return False
    a, g, s = int(d[:3]), int(d[3:5]), int(d[5:])
    return a != 0 and a != 666 and a < 900 and g != 0 and s != 0


def ipv4_ok(v):
    if not re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", v):
        return False
    return all(int(o) <= 255 for o in v.split("."))


def ipv6_ok(v):
    addr = v.split("%", 1)[0]
    if "%" in v and not re.fullmatch(r"[\w.-]+", v.split("%", 1)[1]):
        return False
    try:
        ipaddress.IPv6Address(addr)
        return True
    except ValueError:
        return False


def jwt_ok(v):
    parts = v.split(".")
    if len(parts) != 3 or not v.startswith("eyJ") or not all(parts):
        return False
    if not all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts):
        return False
    try:
        h = parts[0] + "=" * (-len(parts[0]) % 4)
        p = parts[1] + "=" * (-len(parts[1]) % 4)
        hj = json.loads(base64.urlsafe_b64decode(h))
        json.loads(base64.urlsafe_b64decode(p))
        return "alg" in hj
    except Exception:
        return False


def email_ok(v):
    return re.fullmatch(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", v) is not None


def phone_ok(v):
    if not re.fullmatch(r"\+?[\d()][\d() .\-]*\d", v):
        return False
    n = len(re.sub(r"\D", "", v))
    return 7 <= n <= 15


def mac_ok(v):
    return re.fullmatch(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}", v) is not None \
        or re.fullmatch(r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}", v) is not None


def secret_ok(v):
    return v != "" and v == v.strip()


VALIDATORS = {
    "EMAIL": email_ok, "IPV4": ipv4_ok, "IPV6": ipv6_ok, "PHONE": phone_ok,
    "CREDIT_CARD": card_ok, "IBAN": iban_ok, "US_SSN": ssn_ok, "MAC_ADDRESS": mac_ok,
    "JWT": jwt_ok, "SECRET": secret_ok,
}


def parse_file(path):
    """Yield (line_no, raw_record_text) for every record of a corpus file."""
    errors = []
    records = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == "<<<":
            start = i + 1
            j = i + 1
            while j < len(lines) and lines[j] != ">>>":
                if lines[j] == "<<<":
                    errors.append("%s:%d: nested <<<" % (path, j + 1))
                j += 1
            if j >= len(lines):
                errors.append("%s:%d: unterminated <<< block" % (path, i + 1))
                break
            body = lines[start:j]
            if not body:
                errors.append("%s:%d: empty <<< block" % (path, i + 1))
            records.append((start, "\n".join(body)))
            i = j + 1
            continue
        if line == ">>>":
            errors.append("%s:%d: stray >>>" % (path, i + 1))
        elif line.startswith("##") or line.strip() == "":
            pass
        else:
            records.append((i + 1, line))
        i += 1
    return records, errors


def strip(raw):
    """Return (clean_text, [(kind, start, end, value)])."""
    out, spans, pos = [], [], 0
    clen = 0
    for m in ANN.finditer(raw):
        out.append(raw[pos:m.start()])
        clen += m.start() - pos
        kind, value = m.group(1), m.group(2)
        spans.append((kind, clen, clen + len(value), value))
        out.append(value)
        clen += len(value)
        pos = m.end()
    out.append(raw[pos:])
    return "".join(out), spans


# ---------------------------------------------------------------- lint
LINT = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    ("IPV4", re.compile(r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)")),
    ("CREDIT_CARD", re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")),
    ("US_SSN", re.compile(r"(?<![\w-])\d{3}[- ]\d{2}[- ]\d{4}(?![\w-])")),
    ("MAC_ADDRESS", re.compile(r"(?<![\w:.-])[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![\w:.-])|\b[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\b")),
    ("JWT", re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")),
    ("SECRET", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}|\bxox[abpr]-[\w-]+|\b[sr]k_live_\w+|-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("SECRET?", re.compile(r"(?i)(?:password|passwd|pwd|secret|token|api[_-]?key|apikey)[\"']?\s*[:=]\s*[\"']?(?!\*+|\[|<|\"|'|null|none|true|false|/)([^\s\"',&}\]]{4,})")),
    ("PHONE", re.compile(r"(?<![\w-])(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}(?![\w-])|\+\d[\d \-]{7,16}\d")),
    ("IPV6", re.compile(r"(?<![\w:.%])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])")),
]


def lint(clean, spans):
    masked = list(clean)
    for _, s, e, _ in spans:
        for k in range(s, e):
            masked[k] = "\u2588"
    masked = "".join(masked)
    hits = []
    for kind, rx in LINT:
        for m in rx.finditer(masked):
            v = m.group(0)
            if "\u2588" in v:
                continue
            if kind == "IPV4" and not ipv4_ok(v):
                continue
            if kind == "CREDIT_CARD" and not card_ok(v):
                continue
            if kind == "IBAN" and not iban_ok(v):
                continue
            if kind == "US_SSN" and not ssn_ok(v):
                continue
            if kind == "IPV6":
                if v.count(":") < 2 or not ipv6_ok(v) or re.fullmatch(r"[\d:]+", v) and "::" not in v:
                    continue
            hits.append((kind, v))
    return hits


def main():
    do_lint = "--lint" in sys.argv
    quiet = "--quiet" in sys.argv
    files = sorted(f for f in os.listdir(HERE) if f.endswith(".log"))
    errors = []
    per_kind = Counter()
    per_file = {}
    total = with_pii = 0
    warnings = []
    for f in files:
        path = os.path.join(HERE, f)
        records, errs = parse_file(path)
        errors += errs
        fk = Counter()
        fpos = 0
        for line_no, raw in records:
            where = "%s:%d" % (f, line_no)
            # balance check: every « must be consumed by a well-formed annotation
            rest = ANN.sub("", raw)
            if "«" in rest or "»" in rest:
                errors.append("%s: unbalanced or malformed « »" % where)
            clean, spans = strip(raw)
            if "«" in clean or "»" in clean:
                errors.append("%s: nested annotation" % where)
            for kind, _, _, value in spans:
                if kind not in KINDS:
                    errors.append("%s: unknown kind %r" % (where, kind))
                    continue
                if not VALIDATORS[kind](value):
                    errors.append("%s: invalid %s value %r" % (where, kind, value))
                per_kind[kind] += 1
                fk[kind] += 1
            total += 1
            if spans:
                with_pii += 1
                fpos += 1
            if do_lint:
                for kind, v in lint(clean, spans):
                    warnings.append("%s: unannotated %s-like %r" % (where, kind, v))
        per_file[f] = (len(records), fpos, fk)

    if not quiet:
        print("%-20s %8s %8s  %s" % ("file", "records", "with_pii", "annotations"))
        for f, (n, p, fk) in per_file.items():
            print("%-20s %8d %8d  %s" % (f, n, p, ", ".join("%s=%d" % kv for kv in sorted(fk.items()))))
        print()
        print("per-kind annotation counts:")
        for k in KINDS:
            print("  %-12s %5d" % (k, per_kind[k]))
        print("  %-12s %5d" % ("TOTAL", sum(per_kind.values())))
        print()
        print("records: %d total, %d with PII, %d without PII" % (total, with_pii, total - with_pii))
    for w in warnings:
        print("lint:", w)
    for e in errors:
        print("ERROR:", e)
    if errors:
        print("%d error(s)" % len(errors))
        sys.exit(1)
    if not quiet:
        print("OK")


if __name__ == "__main__":
    main()
