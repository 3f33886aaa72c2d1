#!/usr/bin/env python3
"""Generate the PII accuracy corpus: monitoring log lines with exact gold spans.

Deterministic: a fixed seed drives Python's `random` and every Faker instance,
so the same Faker/phonenumbers versions (pinned in run.sh) give the same file.

Output: JSONL, one object per line:
    {"id": n, "text": "...", "spans": [{"start": s, "end": e, "kind": "PHONE",
     "tags": ["phone-ext-x", ...]}], "tags": [...]}
Offsets are Python string indices (Unicode code points), end exclusive. They
are computed while the text is built, segment by segment, never by searching
the finished string. Each span carries the tags of its own format, so recall
can be broken down per format exactly; the line's tags are their union (plus
`negative-*` tags on lines that hold look-alikes only).

Usage: gen_corpus.py [--lines N] [--seed S] > corpus.jsonl
"""

import argparse
import json
import random
import re
import string
import sys
import uuid
from collections import Counter

import phonenumbers
from faker import Faker
from phonenumbers import PhoneNumberFormat as PNF

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES"]
REGION = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "nl_NL": "NL", "es_ES": "ES"}
LANG = {"en_US": "en", "en_GB": "en", "de_DE": "de", "fr_FR": "fr", "nl_NL": "nl", "es_ES": "es"}

R = random.Random()
FK = {}


def init(seed):
    R.seed(seed)
    for i, loc in enumerate(LOCALES):
        f = Faker(loc)
        f.seed_instance(seed * 100 + i)
        FK[loc] = f


def pick(xs):
    return R.choice(xs)


def chance(p):
    return R.random() < p


# ---------------------------------------------------------------------------
# Phrases: lists of segments. ("t", text) is plain text; ("v", text, kind,
# tags) is a gold span. A segment marked raw is never escaped by a carrier.
# ---------------------------------------------------------------------------

def T(s):
    return ("t", s)


def V(s, kind, tags):
    assert s, "empty span"
    return ("v", s, kind, sorted(set(tags)))


class Phrase:
    def __init__(self, segs, tags=(), only=None, raw=False):
        self.segs = segs
        self.tags = set(tags)  # negative-* tags for look-alike phrases
        self.only = only  # restrict carriers (a set of names) or None
        self.raw = raw  # never escape (holds `\u0040` or other escapes)


def json_escape(s):
    return json.dumps(s, ensure_ascii=False)[1:-1]


class Line:
    def __init__(self):
        self.buf = []
        self.n = 0
        self.spans = []
        self.tags = set()

    def t(self, s):
        self.buf.append(s)
        self.n += len(s)

    def phrase(self, ph, escape=False):
        for seg in ph.segs:
            s = seg[1]
            if escape and not ph.raw:
                s = json_escape(s)
            if seg[0] == "v":
                self.spans.append({"start": self.n, "end": self.n + len(s), "kind": seg[2], "tags": seg[3]})
                self.tags.update(seg[3])
            self.t(s)
        self.tags.update(ph.tags)

    def text(self):
        return "".join(self.buf)


def needs_raw_carrier(ph):
    """A value that escaping would change (a tab, a quote) must not go into a
    quoted carrier: its gold text would no longer be the value."""
    return any(seg[0] == "v" and json_escape(seg[1]) != seg[1] for seg in ph.segs)


# ---------------------------------------------------------------------------
# Filler that is never PII (hosts, services, ids, times). Carriers must not
# contain phone context words (call, contact, ...), names or numbers that a
# careful reader would redact.
# ---------------------------------------------------------------------------

HOSTS = ["db-7", "app-3", "web-12", "edge-2", "pg-primary", "pg-replica-1", "kafka-4", "redis-2",
         "api-gw-1", "worker-9", "lb-prod-3", "ingest-5", "zbx-proxy-2", "mon-1"]
SVCS = ["billing", "orders", "auth", "notifier", "crm-sync", "ingest", "support-desk", "payments",
        "alerting", "user-profile", "helpdesk-bridge", "webhooks"]
PROGS = ["sshd", "postfix/smtp", "nginx", "app", "cron", "kernel", "systemd", "haproxy", "zabbix_server",
         "postgres", "dovecot", "sudo"]
LEVELS = ["INFO", "WARN", "ERROR", "DEBUG"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
TICKET = ["INC", "SUP", "OPS", "SEC", "CHG", "REQ"]
EXC = ["IllegalStateException", "ValidationException", "DuplicateKeyException", "PaymentDeclinedException",
       "NotificationFailedException", "TimeoutException", "RuntimeException"]
PKGS = ["orders", "billing", "notify", "crm", "auth", "profile"]
METHODS = ["process", "handle", "apply", "validate", "dispatch", "send", "lookup", "persist", "run"]
ALERTS = ["HighErrorRate", "DiskAlmostFull", "ReplicationLag", "CertificateExpiry", "QueueBacklog",
          "LoginFailures", "PaymentGatewayErrors", "SmsDeliveryFailures"]


def iso_ts():
    return "2026-%02d-%02dT%02d:%02d:%02d.%03dZ" % (R.randint(1, 12), R.randint(1, 28), R.randint(0, 23),
                                                    R.randint(0, 59), R.randint(0, 59), R.randint(0, 999))


def syslog_ts():
    return "%s %2d %02d:%02d:%02d" % (pick(MONTHS), R.randint(1, 28), R.randint(0, 23), R.randint(0, 59),
                                      R.randint(0, 59))


def uuid4():
    return str(uuid.UUID(int=R.getrandbits(128), version=4))


def hexs(n):
    return "".join(R.choice("0123456789abcdef") for _ in range(n))


# ---------------------------------------------------------------------------
# Carriers: wrap a list of phrases into one log line.
# ---------------------------------------------------------------------------

def join_phrases(line, phs, escape, sep="; "):
    for k, ph in enumerate(phs):
        if k:
            # after a greeting's comma, a space reads better than "; "
            line.t(" " if phs[k - 1].segs[-1][1].endswith(",") and sep.strip() else sep)
        line.phrase(ph, escape)


def c_syslog(phs):
    l = Line()
    l.t("%s %s %s[%d]: " % (syslog_ts(), pick(HOSTS), pick(PROGS), R.randint(100, 65000)))
    join_phrases(l, phs, False)
    return l


def c_logfmt(phs):
    l = Line()
    l.t("ts=%s level=%s svc=%s req_id=%s msg=\"" % (iso_ts(), pick(LEVELS).lower(), pick(SVCS), uuid4()))
    join_phrases(l, phs, True)
    l.t("\" dur_ms=%d" % R.randint(1, 9000))
    return l


def c_json(phs):
    l = Line()
    l.t("%s %s %s {\"event\":\"%s\",\"detail\":\"" % (iso_ts(), pick(LEVELS), pick(SVCS),
                                                      pick(["update", "notify", "reject", "sync", "audit"])))
    join_phrases(l, phs, True)
    l.t("\",\"trace_id\":\"%s\",\"attempt\":%d}" % (hexs(32), R.randint(1, 5)))
    return l


def c_ticket(phs):
    l = Line()
    l.t("[%s-%d] Update %d (%s UTC): " % (pick(TICKET), R.randint(1000, 99999), R.randint(1, 9),
                                          iso_ts()[:16].replace("T", " ")))
    join_phrases(l, phs, False, pick(["; ", ". ", " / "]))
    l.t(pick([". Next update in 30 min.", ". Waiting on vendor.", " - escalated to L2.", ".", ""]))
    return l


def c_alert(phs):
    l = Line()
    l.t("ALERT [%s] %s on %s: " % (pick(["P1", "P2", "P3", "critical", "warning"]), pick(ALERTS), pick(HOSTS)))
    join_phrases(l, phs, False)
    l.t(" (value=%.1f, threshold=%d) runbook: https://wiki.example.internal/runbooks/%s"
        % (R.uniform(50, 100), R.choice([80, 90, 95]), pick(ALERTS).lower()))
    return l


def c_stack(phs):
    l = Line()
    cls = pick(PKGS).capitalize() + pick(["Service", "Handler", "Worker"])
    l.t("%s ERROR [http-nio-8080-exec-%d] com.example.%s.%s - %s: " % (iso_ts(), R.randint(1, 40), pick(PKGS),
                                                                      cls, pick(EXC)))
    join_phrases(l, phs, False)
    for _ in range(R.randint(1, 3)):
        p = pick(PKGS)
        c = p.capitalize() + pick(["Service", "Api", "Repository", "Job"])
        l.t("\n\tat com.example.%s.%s.%s(%s.java:%d)" % (p, c, pick(METHODS), c, R.randint(20, 900)))
    return l


def c_note(phs):
    l = Line()
    l.t(pick(["Incident note: ", "Postmortem draft: ", "Shift handover: ", "Support comment: "]))
    join_phrases(l, phs, False, pick(["; ", ". ", " and "]))
    l.t(pick([". Root cause under investigation.", ". Monitoring.", ". Closed after verification.", ""]))
    return l


def c_audit(phs):
    l = Line()
    l.t("audit: action=%s result=%s " % (pick(["login", "export", "update", "delete", "view"]),
                                         pick(["success", "failure", "denied"])))
    join_phrases(l, phs, False, " ")
    l.t(" session=%s" % hexs(16))
    return l


def c_access(phs):
    # An access-log request line; URL phrases read naturally inside it.
    l = Line()
    l.t("%s - - [%02d/%s/2026:%02d:%02d:%02d +0000] \"GET " % (pick(HOSTS), R.randint(1, 28), pick(MONTHS),
                                                               R.randint(0, 23), R.randint(0, 59),
                                                               R.randint(0, 59)))
    join_phrases(l, phs, False, "&")
    l.t(" HTTP/1.1\" %d %d \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" rt=%.3f"
        % (pick([200, 302, 400, 404, 500]), R.randint(100, 90000), R.uniform(0.001, 3)))
    return l


CARRIERS = {"syslog": c_syslog, "logfmt": c_logfmt, "json": c_json, "ticket": c_ticket, "alert": c_alert,
            "stack": c_stack, "note": c_note, "audit": c_audit}
QUOTED = {"logfmt", "json"}


def build_line(phs):
    only = None
    for ph in phs:
        if ph.only:
            only = ph.only if only is None else (only & ph.only)
    if only == {"access"}:
        return c_access(phs)
    names = sorted(only) if only else sorted(CARRIERS)
    if any(needs_raw_carrier(ph) for ph in phs):
        names = [n for n in names if n not in QUOTED] or ["syslog"]
    if any(ph.raw for ph in phs):
        names = [n for n in names if n in QUOTED] or ["json"]
    return CARRIERS[pick(names)](phs)


# ---------------------------------------------------------------------------
# EMAIL
# ---------------------------------------------------------------------------

DOMAINS = ["example.com", "example.org", "example.net", "mail.example.de", "corp.example.fr", "example.nl",
           "example.es", "support.example.co.uk"]
NONASCII_LOCALS = ["用户", "张伟", "李娜", "иван.петров", "ольга", "josé.garcía", "müller", "françois.lefèvre",
                   "zoë", "jürgen.weiß", "élodie", "añón", "Ωmega"]


def fk():
    return FK[pick(LOCALES)]


def ascii_email():
    f = fk()
    r = R.random()
    if r < 0.35:
        return f.email()
    if r < 0.55:
        return f.free_email()
    if r < 0.75:
        return f.company_email()
    first = re.sub(r"[^a-z]", "", FK["en_US"].first_name().lower())
    last = re.sub(r"[^a-z]", "", FK["en_US"].last_name().lower())
    sep = pick([".", "_", "-", ""])
    extra = pick(["", "", "+ops", "+alerts", str(R.randint(1, 99))])
    return "%s%s%s%s@%s" % (first, sep, last, extra, pick(DOMAINS))


def email_ctx(val_segs, tags):
    pre, post = pick([
        ("customer ", " reported the outage"), ("user ", " logged in"), ("notify ", ""), ("reply-to: ", ""),
        ("to=<", ">, relay=mx.example.net[{ip}]:25, status=sent"), ("sending receipt to ", ""),
        ("password reset requested for ", ""), ("Kunde ", " hat angerufen"), ("contactez ", " pour le suivi"),
        ("mail naar ", " gestuurd"), ("correo enviado a ", ""), ("owner_email=", ""), ("bounce from ", ""),
    ])
    return [T(pre)] + val_segs + with_ip(post)


def with_ip(text):
    """Plain text that may hold an `{ip}` slot: the address is a gold IPV4 span."""
    if "{ip}" not in text:
        return [T(text)]
    a, b = text.split("{ip}")
    return [T(a), V(ipv4(), "IPV4", ["ipv4-plain", "plain"]), T(b)]


def ph_email():
    variant = pick(["plain", "plain", "plain", "urlenc", "html-dec", "html-hex", "html-named", "json-u0040",
                    "fullwidth-at", "zwsp", "nonascii-local", "display-name", "display-name"])
    e = ascii_email()
    local, dom = e.split("@")
    if variant == "plain":
        return Phrase(email_ctx([V(e, "EMAIL", ["email-plain", "plain"])], []))
    if variant == "urlenc":
        loc = local.replace("+", "%2B")
        v = loc + "%40" + dom
        path = pick(["/api/v1/users/lookup?email=", "/unsubscribe?u=", "/reset?next=%2Faccount&email=",
                     "/track/open?rcpt=", "/search?q="])
        segs = [T(path), V(v, "EMAIL", ["email-urlenc", "obfuscated"]), T("&page=%d" % R.randint(1, 9))]
        if chance(0.5):
            return Phrase(segs, only={"access"})
        return Phrase([T("redirect to https://app.example.com")] + segs)
    if variant in ("html-dec", "html-hex", "html-named"):
        at = {"html-dec": "&#64;", "html-hex": "&#x40;", "html-named": "&commat;"}[variant]
        v = local + at + dom
        tag = "email-html-named" if variant == "html-named" else "email-html-numeric"
        ctx = pick([("bounce body: <a href=\"mailto:", "\">unsubscribe</a>"), ("html_body contains ", ""),
                    ("<td>", "</td>"), ("Contact: ", "<br>")])
        return Phrase([T(ctx[0]), V(v, "EMAIL", [tag, "email-" + variant, "obfuscated"]), T(ctx[1])])
    if variant == "json-u0040":
        v = local + "\\u0040" + dom
        return Phrase([T("payload={\\\"email\\\":\\\""), V(v, "EMAIL", ["email-json-u0040", "obfuscated"]),
                       T("\\\"}")], raw=True, only={"json", "logfmt"})
    if variant == "fullwidth-at":
        return Phrase(email_ctx([V(local + "＠" + dom, "EMAIL", ["email-fullwidth-at", "obfuscated"])], []))
    if variant == "zwsp":
        s = local + "@" + dom
        k = R.randint(1, len(s) - 1)
        v = s[:k] + "\u200b" + s[k:]
        return Phrase(email_ctx([V(v, "EMAIL", ["email-zwsp", "obfuscated"])], []))
    if variant == "nonascii-local":
        v = pick(NONASCII_LOCALS) + "@" + pick(DOMAINS)
        return Phrase(email_ctx([V(v, "EMAIL", ["email-nonascii-local", "obfuscated"])], []))
    # display-name: "Jane Doe" <jane@x.org> (the name is a PERSON span too)
    loc = pick(LOCALES)
    name, ntags = person_name(loc)
    ptags = ntags + ["person-ctx-display-name", "person", "plain"]
    quoted = chance(0.6)
    head = pick(["From: ", "reply from ", "Reply-To: ", "sender=", "mail from "])
    if quoted:
        segs = [T(head + "\""), V(name, "PERSON", ptags), T("\" <")]
    else:
        segs = [T(head), V(name, "PERSON", ptags), T(" <")]
    segs += [V(e, "EMAIL", ["email-display-name", "plain"]), T(">")]
    return Phrase(segs)


# ---------------------------------------------------------------------------
# PERSON
# ---------------------------------------------------------------------------

PARTICLE_NAMES = ["van der Berg", "van den Broek", "de la Fuente", "del Río", "von Weizsäcker", "de Vries",
                  "van Dijk", "de la Cruz", "von der Heide", "di Stefano", "le Goff", "de los Santos",
                  "van 't Hof", "ter Horst"]
HYPHEN_LAST = ["Müller-Lüdenscheidt", "Lefèvre-Dumas", "García-Márquez", "Smith-Jones", "Schulze-Bergmann"]
APOS_LAST = ["O'Brien", "O'Connor", "D'Angelo", "d'Artagnan"]


def person_name(loc=None, first_only=False):
    loc = loc or pick(LOCALES)
    f = FK[loc]
    first = f.first_name()
    tags = ["person-" + loc]
    if first_only:
        tags.append("person-first-only")
        name = first
    else:
        r = R.random()
        if r < 0.12:
            last = pick(PARTICLE_NAMES)
        elif r < 0.17:
            last = pick(HYPHEN_LAST)
        elif r < 0.21:
            last = pick(APOS_LAST)
        else:
            last = f.last_name()
        if re.search(r"(^| )(van|von|de|del|der|den|di|le|la|los|ter|'t)( |$)", last):
            tags.append("person-particle")
        if "-" in last:
            tags.append("person-hyphen")
        if "'" in last:
            tags.append("person-apostrophe")
        name = first + " " + last
    if any(ord(c) > 127 for c in name):
        tags.append("person-accent")
    return name, tags


PERSON_CTX = [
    # (context tag, prefix, suffix, first-only?)
    ("greeting", "Dear ", ",", False), ("greeting", "Dear ", ", your ticket was updated", False),
    ("greeting", "Hi ", ",", True), ("greeting", "Hi ", ", the fix is deployed", True),
    ("greeting", "Hello ", ",", False), ("greeting", "Hallo ", ",", True), ("greeting", "Bonjour ", ",", False),
    ("greeting", "Hola ", ",", True), ("greeting", "Beste ", ",", False), ("greeting", "Sehr geehrte Frau ", ",", "last"),
    ("user-kv", "user=", " action=login", False), ("user-kv", "user=\"", "\"", False),
    ("user-kv", "name=", "", False), ("user-kv", "username: ", "", False),
    ("assigned", "assigned to: ", "", False), ("assigned", "assignee=", "", False),
    ("assigned", "Assigned to ", " (L2)", False),
    ("by", "acknowledged by ", "", False), ("by", "closed by ", "", False), ("by", "approved by ", " at 10:42", False),
    ("by", "change requested by ", "", False),
    ("for", "access granted for ", "", False), ("for", "on-call rotation for ", " starts Monday", False),
    ("for", "password reset for ", "", False), ("for", "badge issued for ", "", False),
    ("reported", "Reported by: ", "", False), ("reported", "reporter=", "", False),
    ("owner", "Owner: ", "", False), ("owner", "owner=", "", False),
    ("cc", "cc ", "", False), ("cc", "cc: ", "", "two"),
]


def ph_person():
    tag, pre, post, mode = pick(PERSON_CTX)
    loc = pick(LOCALES)
    if mode == "two":
        n1, t1 = person_name(loc)
        n2, t2 = person_name(pick(LOCALES))
        ctx = ["person-ctx-" + tag, "person"]
        return Phrase([T(pre), V(n1, "PERSON", t1 + ctx + ["plain"]), T(", "), V(n2, "PERSON", t2 + ctx + ["plain"]), T(post)])
    if mode == "last":
        last = FK[loc].last_name()
        tags = ["person-" + loc, "person-last-only"] + (["person-accent"] if any(ord(c) > 127 for c in last) else [])
        return Phrase([T(pre), V(last, "PERSON", tags + ["person-ctx-" + tag, "person", "plain"]), T(post)])
    name, tags = person_name(loc, first_only=bool(mode))
    return Phrase([T(pre), V(name, "PERSON", tags + ["person-ctx-" + tag, "person", "plain"]), T(post)])


# ---------------------------------------------------------------------------
# PHONE
# ---------------------------------------------------------------------------

CTX_WORDS = {
    "en": ["call {n}", "Call me at {n}", "phone: {n}", "phone={n}", "tel {n}", "mobile {n}", "cell: {n}", "fax {n}",
           "sms to {n}", "callback {n}", "callback requested to {n}", "Paging on-call at {n}", "paging {n}",
           "contact: {n}", "whatsapp {n}", "WhatsApp: {n}"],
    "de": ["Telefon {n}", "Telefon: {n}", "Handy {n}", "Handy: {n}", "Rufnummer {n}", "Rückruf unter Rufnummer {n}",
           "Tel. {n}", "Fax {n}"],
    "fr": ["téléphone {n}", "téléphone : {n}", "portable {n}", "appeler le {n}", "merci d'appeler au {n}",
           "tél. {n}"],
    "nl": ["telefoon {n}", "telefoon: {n}", "bellen naar {n}", "graag bellen op {n}", "mobiel {n}"],
    "es": ["teléfono {n}", "teléfono: {n}", "móvil {n}", "llamar al {n}", "por favor llamar al {n}", "tel. {n}"],
}
NEUTRAL_PHONE = ["reached us from {n}", "customer {n} asked for a refund", "number {n} unreachable",
                 "SIP trunk rejected {n}", "destination={n}", "Kunde {n} wartet",
                 "client {n} en attente"]


def valid_phone(loc):
    """A number in one of Faker's formats for `loc` that libphonenumber says
    is valid (real numbers in logs are): (formatted string, parsed number)."""
    f = FK[loc]
    for _ in range(500):
        s = f.phone_number()
        try:
            p = phonenumbers.parse(s.replace("(0)", ""), REGION[loc])
        except phonenumbers.NumberParseException:
            continue
        # `00…` parses as dialled abroad: keep numbers of the locale's country.
        if phonenumbers.is_valid_number(p) and phonenumbers.region_code_for_number(p) == REGION[loc]:
            return s, p
    raise RuntimeError("no valid phone for " + loc)


def groups_of(p):
    nat = phonenumbers.format_number(p, PNF.NATIONAL)
    return [g for g in re.split(r"\D+", nat) if g]


def phone_phrase(v, tags, loc, ctx=True, ext=""):
    """`ext`: an extension written after the number (`x236`, ` ext. 12`).
    Like the project's hand-labelled corpus (core/tests/corpus/README.md),
    the gold span is the number only: an extension identifies no one."""
    tags = tags + ["phone-" + loc]
    if ctx:
        lang = LANG[loc] if chance(0.6) else pick(list(CTX_WORDS))
        tmpl = pick(CTX_WORDS[lang])
    else:
        tmpl = pick(NEUTRAL_PHONE)
        tags = tags + ["phone-noctx"]
    pre, post = tmpl.split("{n}")
    return Phrase([T(pre), V(v, "PHONE", tags), T(ext + post)])


HYPHENS = {"u2010": "\u2010", "u2011": "\u2011", "u2012": "\u2012", "u2013": "\u2013", "u2212": "\u2212"}


def bare_phrase(digits, loc, extra_tags):
    lang = LANG[loc]
    pre, post = pick(CTX_WORDS[lang]).split("{n}")
    return Phrase([T(pre), V(digits, "PHONE", ["phone-bare-ctx", "phone-bare-ctx-" + lang, "phone-" + loc]
                             + extra_tags), T(post)])


def ph_phone():
    variant = pick(["faker", "faker", "faker", "ext", "ext", "intl-plus", "intl-e164", "intl-00", "intl-011",
                    "intl-001", "bare", "bare", "bare", "hyphen", "hyphen", "nbsp", "dot", "slash", "paren"])
    if variant == "intl-001":
        loc = "en_US"  # Faker's own `001-` form, a US number
    elif variant == "intl-011":
        loc = pick([l for l in LOCALES if l != "en_US"])  # dialled out of North America
    else:
        loc = pick(LOCALES)
    s, p = valid_phone(loc)
    base = re.sub(r"x\d+$", "", s)
    p.extension = None
    g = groups_of(p)
    intl = phonenumbers.format_number(p, PNF.INTERNATIONAL)
    # Numbers in two groups or fewer are bare-ish: real logs label them, and
    # without a label they are as ambiguous to a reader as to a scanner.
    few = len(g) <= 2
    if variant == "faker":
        if re.fullmatch(r"\d+", s):
            return bare_phrase(s, loc, ["phone-faker-format", "plain"])
        tags = ["phone-faker-format", "plain"]
        ext = ""
        if re.search(r"x\d+$", s):
            tags += ["phone-ext-x", "phone-ext"]
            ext = s[len(base):]
        if s.startswith("001-"):
            tags += ["phone-intl-001"]
        elif s.startswith("+"):
            tags += ["phone-intl-plus"]
        return phone_phrase(base, tags, loc, ctx=chance(0.7) or (few and not s.startswith("+")), ext=ext)
    if variant == "ext":
        n = str(R.randint(2, 99999))
        kind = pick(["x", "ext", "ext.", "hash"])
        suffix = {"x": "x" + n, "ext": " ext " + n, "ext.": " ext. " + n, "hash": "#" + n}[kind]
        tag = {"x": "phone-ext-x", "ext": "phone-ext-ext", "ext.": "phone-ext-extdot", "hash": "phone-ext-hash"}[kind]
        bare = bool(re.fullmatch(r"\d+", base))
        return phone_phrase(base, [tag, "phone-ext", "obfuscated"], loc, ctx=chance(0.7) or bare, ext=suffix)
    if variant == "intl-plus":
        return phone_phrase(intl, ["phone-intl-plus", "plain"], loc, ctx=chance(0.6))
    if variant == "intl-e164":
        return phone_phrase(phonenumbers.format_number(p, PNF.E164), ["phone-intl-e164", "plain"], loc,
                            ctx=chance(0.6))
    if variant == "intl-00":
        tags = ["phone-intl-00", "obfuscated"] + (["phone-intl-0044"] if loc == "en_GB" else [])
        return phone_phrase("00" + intl[1:], tags, loc, ctx=chance(0.7))
    if variant == "intl-011":
        v = "011 " + intl[1:] if chance(0.6) else "011-" + intl[1:].replace(" ", "-")
        return phone_phrase(v, ["phone-intl-011", "obfuscated"], loc, ctx=chance(0.7))
    if variant == "intl-001":
        return phone_phrase("001-" + "-".join(g), ["phone-intl-001", "obfuscated"], loc, ctx=chance(0.7))
    if variant == "bare":
        return bare_phrase("".join(g), loc, ["obfuscated"])
    if variant == "hyphen":
        name = pick(sorted(HYPHENS))
        use_intl = chance(0.3)
        v = HYPHENS[name].join(intl.replace("-", " ").split(" ") if use_intl else g)
        return phone_phrase(v, ["phone-sep-" + name, "phone-sep-unicode-hyphen", "obfuscated"], loc,
                            ctx=chance(0.7) or (few and not use_intl))
    if variant == "nbsp":
        sp, tag = pick([("\u00a0", "phone-sep-nbsp"), ("\u202f", "phone-sep-nnbsp")])
        use_intl = chance(0.4)
        src = intl.replace("-", " ") if use_intl else " ".join(g)
        return phone_phrase(src.replace(" ", sp), [tag, "obfuscated"], loc, ctx=chance(0.7) or (few and not use_intl))
    if variant == "dot":
        return phone_phrase(".".join(g), ["phone-sep-dot", "plain"], loc, ctx=chance(0.7) or few)
    if variant == "slash":
        v = g[0] + "/" + "".join(g[1:]) if chance(0.6) else g[0] + "/" + " ".join(g[1:])
        return phone_phrase(v, ["phone-sep-slash", "plain"], loc, ctx=chance(0.7) or few)
    # paren: (958) 644-2223, (030) 1234567, or +44 (0)20 7946 0958 where the
    # country has a trunk prefix
    if REGION[loc] == "US":
        v = "(%s) %s-%s" % tuple(g[:3])
    elif g[0].startswith("0") and chance(0.5):
        v = "+%d (0)%s" % (p.country_code, " ".join([g[0][1:]] + g[1:]))
    else:
        v = "(" + g[0] + ") " + " ".join(g[1:])
    return phone_phrase(v, ["phone-sep-paren", "plain"], loc, ctx=chance(0.7) or few)


# ---------------------------------------------------------------------------
# CREDIT_CARD
# ---------------------------------------------------------------------------

def luhn_sum(digits):
    """Luhn sum of `digits`, doubling every second digit from the right."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total


def luhn_complete(prefix, length):
    body = prefix + "".join(R.choice(string.digits) for _ in range(length - len(prefix) - 1))
    # With a check digit appended, the body's digits shift one place left.
    return body + str((10 - luhn_sum(body + "0") % 10) % 10)


def luhn_ok(num):
    return luhn_sum(num) % 10 == 0


BRANDS = {
    "visa": (lambda: "4", lambda: pick([16, 16, 16, 19])),
    "mastercard": (lambda: str(R.randint(51, 55)), lambda: 16),
    "mastercard-2series": (lambda: str(R.randint(2221, 2720)), lambda: 16),
    "amex": (lambda: pick(["34", "37"]), lambda: 15),
    "discover": (lambda: pick(["6011", str(R.randint(644, 649)), "65"]), lambda: 16),
    "diners": (lambda: pick(["36", "38", "39", str(R.randint(300, 305))]), lambda: 14),
    "jcb": (lambda: str(R.randint(3528, 3589)), lambda: 16),
    "jcb15": (lambda: pick(["2131", "1800"]), lambda: 15),
    "maestro": (lambda: pick(["5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763"]),
                lambda: R.randint(12, 19)),
    "unionpay": (lambda: "62" + str(R.randint(2126, 2925)) if chance(0.3) else "62" + str(R.randint(10, 99)),
                 lambda: R.randint(16, 19)),
    "mir": (lambda: str(R.randint(2200, 2204)), lambda: 16),
    "rupay": (lambda: pick(["60", "65", "81", "82", "508"]), lambda: 16),
}


def card_groups(num):
    n = len(num)
    if n == 15:
        cuts = [4, 6, 5]
    elif n == 14:
        cuts = [4, 6, 4]
    else:
        # groups of 4; a 1 or 2 left over joins the last group (4-4-5,
        # 4-4-4-6), a 3 stands alone (4-4-4-4-3)
        cuts = [4] * (n // 4)
        if n % 4 == 3:
            cuts.append(3)
        elif n % 4:
            cuts[-1] += n % 4
    out, k = [], 0
    for c in cuts:
        out.append(num[k:k + c])
        k += c
    return out


CARD_SEPS = {"space": " ", "dash": "-", "dot": ".", "slash": "/", "underscore": "_", "tab": "\t", "endash": "\u2013",
             "zwsp": "\u200b"}
CARD_CTX = ["card {v} declined", "payment card {v} expired", "pan={v}", "cc_number={v}", "charge failed for {v}",
            "Kartennummer {v}", "carte {v} refusée", "tarjeta {v} rechazada", "creditcard {v} geblokkeerd",
            "card_no: {v}", "stored card {v} for recurring billing"]


def ph_card():
    brand = pick(sorted(BRANDS))
    pre_f, len_f = BRANDS[brand]
    num = luhn_complete(pre_f(), len_f())
    assert luhn_ok(num)
    sep = pick(["compact", "space", "space", "dash", "dot", "slash", "underscore", "tab", "endash", "zwsp", "8+8",
                "glued"])
    tags = ["card-" + brand]
    if brand.startswith("mastercard"):
        tags.append("card-mastercard-any")
    if sep == "8+8" and len(num) != 16:
        sep = "space"
    if sep == "compact":
        v = num
        tags += ["card-sep-compact", "plain"]
    elif sep == "8+8":
        v = num[:8] + " " + num[8:]
        tags += ["card-sep-8+8", "obfuscated"]
    elif sep == "glued":
        label = pick(["pan", "card", "cc", "PAN", "ccnum"])
        return Phrase([T(pick(["token for ", "rejected ", "", "vault: "]) + label),
                       V(num, "CREDIT_CARD", tags + ["card-sep-glued", "obfuscated"]),
                       T(pick([" exp 12/28", "", " (test)"]))])
    else:
        v = CARD_SEPS[sep].join(card_groups(num))
        tags += ["card-sep-" + sep, "plain" if sep in ("space", "dash") else "obfuscated"]
    pre, post = pick(CARD_CTX).split("{v}")
    return Phrase([T(pre), V(v, "CREDIT_CARD", tags), T(post)])


# ---------------------------------------------------------------------------
# IBAN
# ---------------------------------------------------------------------------

# BBAN structure per country: n digits, a upper-case letters, c alphanumerics.
IBAN_SPEC = {"DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "NL": "4a10n", "ES": "20n", "IT": "1a10n12c",
             "BE": "12n", "AT": "16n", "CH": "5n12c", "PL": "24n", "PT": "21n", "IE": "4a14n", "SE": "20n",
             "DK": "14n", "NO": "11n"}


def make_iban(cc):
    bban = ""
    for cnt, t in re.findall(r"(\d+)([nac])", IBAN_SPEC[cc]):
        alphabet = {"n": string.digits, "a": string.ascii_uppercase,
                    "c": string.digits + string.ascii_uppercase}[t]
        bban += "".join(R.choice(alphabet) for _ in range(int(cnt)))
    num = int("".join(str(int(ch, 36)) for ch in bban + cc + "00"))
    return cc + "%02d" % (98 - num % 97) + bban


def ph_iban():
    cc = pick(sorted(IBAN_SPEC))
    iban = make_iban(cc)
    fmt = pick(["grouped", "grouped", "compact", "compact", "lower", "lower-grouped"])
    grouped = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    v = {"grouped": grouped, "compact": iban, "lower": iban.lower(), "lower-grouped": grouped.lower()}[fmt]
    tags = ["iban-" + cc, "iban-" + fmt, "obfuscated" if fmt.startswith("lower") else "plain"]
    pre, post = pick(["IBAN {v}", "iban={v}", "refund to {v} failed", "SEPA mandate for account {v}",
                      "Kontonummer (IBAN): {v}", "virement vers {v}", "cuenta {v}", "rekening {v}",
                      "payout_account={v} status=pending"]).split("{v}")
    return Phrase([T(pre), V(v, "IBAN", tags), T(post)])


# ---------------------------------------------------------------------------
# US_SSN
# ---------------------------------------------------------------------------

def ph_ssn():
    while True:
        area = R.randint(1, 899)
        if area != 666:
            break
    v3 = "%03d" % area
    v2 = "%02d" % R.randint(1, 99)
    v4 = "%04d" % R.randint(1, 9999)
    sep, tag = pick([("-", "ssn-dash"), ("-", "ssn-dash"), (" ", "ssn-space"), (".", "ssn-dot")])
    v = v3 + sep + v2 + sep + v4
    pre, post = pick(["SSN {v}", "ssn={v}", "SSN: {v} on file", "social security number {v}",
                      "applicant ssn {v} failed verification", "tax id (SSN) {v}"]).split("{v}")
    return Phrase([T(pre), V(v, "US_SSN", [tag, "plain" if tag != "ssn-dot" else "obfuscated"]), T(post)])


# ---------------------------------------------------------------------------
# IPV4, IPV6, MAC
# ---------------------------------------------------------------------------

FW = {ord(c): chr(0xFF10 + int(c)) for c in "0123456789"}


def ipv4():
    f = fk()
    return f.ipv4_public() if chance(0.6) else f.ipv4_private()


def ph_ipv4():
    ip = ipv4()
    variant = pick(["plain", "plain", "port", "url", "url", "fullwidth", "pctdot"])
    if variant == "plain":
        pre, post = pick(["client {v}", "src={v}", "Failed password for invalid user admin from {v} port 51234",
                          "blocked {v} after 5 attempts", "X-Forwarded-For: {v}", "peer {v} disconnected"]).split("{v}")
        return Phrase([T(pre), V(ip, "IPV4", ["ipv4-plain", "plain"]), T(post)])
    if variant == "port":
        return Phrase([T(pick(["connection from ", "upstream ", "dst="])), V(ip, "IPV4", ["ipv4-port", "plain"]),
                       T(":%d" % pick([5432, 443, 8080, 6379, 22, 51234]))])
    if variant == "url":
        return Phrase([T(pick(["GET http://", "probe https://", "webhook http://", "redirect to https://"])),
                       V(ip, "IPV4", ["ipv4-url", "plain"]),
                       T(pick([":8080/health", "/api/v1/status?x=1", ":9100/metrics", "/"]))])
    if variant == "fullwidth":
        v = ip.translate(FW)
        tags = ["ipv4-fullwidth", "obfuscated"]
        if chance(0.3):
            v = v.replace(".", "．")
            tags.append("ipv4-fullwidth-dot")
        return Phrase([T(pick(["client ", "ログイン元 ", "source "])), V(v, "IPV4", tags), T(pick(["", " blocked"]))])
    enc = pick(["%2E", "%2e"])
    return Phrase([T(pick(["/admin/allow?ip=", "/geo?addr=", "/api/ban?target="])),
                   V(ip.replace(".", enc), "IPV4", ["ipv4-pctdot", "obfuscated"]), T("&ttl=3600")],
                  only={"access"} if chance(0.5) else None)


def ph_ipv6():
    import ipaddress
    f = fk()
    raw = f.ipv6()
    a = ipaddress.IPv6Address(raw)
    variant = pick(["full", "compressed", "compressed", "url", "mapped", "upper"])
    if variant == "full":
        v, tags = a.exploded, ["ipv6-full"]
    elif variant == "compressed":
        # Faker's addresses rarely have zero runs; make one.
        parts = a.exploded.split(":")
        k = R.randint(1, 5)
        parts[k:k + 2] = ["0000", "0000"]
        v, tags = str(ipaddress.IPv6Address(":".join(parts))), ["ipv6-compressed"]
    elif variant == "mapped":
        v, tags = "::ffff:" + ipv4(), ["ipv6-mapped"]
    elif variant == "upper":
        v, tags = str(a).upper(), ["ipv6-upper"]
    else:
        v = str(a)
        return Phrase([T(pick(["GET http://[", "probe https://["])), V(v, "IPV6", ["ipv6-url", "plain"]),
                       T(pick(["]:8080/health", "]/", "]:443/api"]))])
    pre, post = pick(["client {v}", "src={v}", "peer {v} reset", "from {v} port 443", "neighbor {v} down"]).split("{v}")
    return Phrase([T(pre), V(v, "IPV6", tags + ["plain"]), T(post)])


def ph_mac():
    f = fk()
    m = f.mac_address()
    variant = pick(["colon", "colon-upper", "dash", "cisco"])
    if variant == "colon":
        v = m
    elif variant == "colon-upper":
        v = m.upper()
    elif variant == "dash":
        v = m.upper().replace(":", "-")
    else:
        h = m.replace(":", "")
        v = ".".join(h[i:i + 4] for i in range(0, 12, 4))
    pre, post = pick(["DHCPACK on {ip} to {v} via eth0", "mac={v}", "station {v} associated",
                      "client-mac {v}", "ARP who-has from {v}"]).split("{v}")
    return Phrase(with_ip(pre) + [V(v, "MAC_ADDRESS", ["mac-" + variant, "plain"]), T(post)])


# ---------------------------------------------------------------------------
# SECRET (the value only)
# ---------------------------------------------------------------------------

def secret_value():
    if chance(0.3):
        return pick(["hunter2", "Summer2024!", "letmein123", "P@ssw0rd", "changeme99", "Winter#2026"])
    return fk().password(length=R.randint(8, 16), special_chars=False)


def ph_secret():
    variant = pick(["kv", "kv", "pctenc", "json"])
    val = secret_value()
    if variant == "kv":
        key = pick(["password=", "passwd=", "pwd=", "password: "])
        return Phrase([T(pick(["login attempt user=ops ", "DSN host=db-7 user=app ", "retry with ", ""]) + key),
                       V(val, "SECRET", ["secret-kv", "plain"]),
                       T(pick([" failed", " sslmode=require", ""]))])
    if variant == "pctenc":
        return Phrase([T("/login?next=%2Fdashboard%26user%3Dops%26password%3D"),
                       V(val, "SECRET", ["secret-pctenc", "obfuscated"]), T("&lang=en")],
                      only={"access"} if chance(0.5) else None)
    return Phrase([T("request body {\"user\":\"ops\",\"password\":\""), V(val, "SECRET", ["secret-json", "plain"]),
                   T("\"}")])


# ---------------------------------------------------------------------------
# Negatives: look-alikes that must stay untouched
# ---------------------------------------------------------------------------

def non_luhn(n):
    while True:
        s = str(R.randint(1, 9)) + "".join(R.choice(string.digits) for _ in range(n - 1))
        if not luhn_ok(s):
            return s


def ng(tag, s):
    return Phrase([T(s)], tags=["negative-" + tag])


def neg_phrase():
    k = pick(["id", "uuid", "hash", "version", "timestamp", "epoch", "duration", "bytes", "port", "metric", "oid",
              "pid", "hexaddr", "nonluhn", "date", "isbn", "phoneshape", "phoneshape", "namelike", "namelike",
              "namelike", "colons", "at-sign", "fingerprint"])
    if k == "id":
        return ng(k, pick(["order_id=%d" % R.randint(10 ** 5, 10 ** 10), "ticket #%d" % R.randint(1000, 999999),
                           "request %d queued" % R.randint(10 ** 6, 10 ** 9), "job_id=%d" % R.randint(1, 10 ** 8),
                           "customer_id=%d" % R.randint(10 ** 9, 10 ** 10 - 1),
                           "invoice INV-%d-%05d" % (R.randint(2020, 2026), R.randint(1, 99999)),
                           "Key (id)=(%d) already exists" % R.randint(1, 10 ** 7)]))
    if k == "uuid":
        return ng(k, pick(["request_id=%s", "correlation %s", "tenant=%s"]) % uuid4())
    if k == "hash":
        return ng(k, pick(["commit %s" % hexs(40), "deployed %s" % hexs(7), "image sha256:%s" % hexs(64),
                           "etag=\"%s\"" % hexs(32), "md5 %s" % hexs(32)]))
    if k == "version":
        a, b, c, d = R.randint(1, 20), R.randint(0, 30), R.randint(0, 200), R.randint(0, 9999)
        return ng(k, pick(["version %d.%d.%d.%d" % (a, b, c, d), "v%d.%d.%d" % (a, b, c),
                           "agent/%d.%d.%d.%d" % (a, b, c, d), "kernel %d.%d.0-%d-generic" % (a % 6 + 1, b, c),
                           "openssl %d.%d.%d" % (a % 4, b % 4, c % 20), "pkg-%d.%d.%d.%d.tar.gz" % (a, b, c, d)]))
    if k == "timestamp":
        return ng(k, pick([iso_ts(), "Date: Sun, %02d Nov 2026 %02d:%02d:%02d GMT" % (R.randint(1, 28), R.randint(0, 23),
                                                                                      R.randint(0, 59), R.randint(0, 59)),
                           "started at " + iso_ts()[:19].replace("T", " ")]))
    if k == "epoch":
        s = R.randint(1_600_000_000, 1_900_000_000)
        return ng(k, pick(["ts=%d" % s, "ts=%d%03d" % (s, R.randint(0, 999)), "\"ts\":%d.%03d" % (s, R.randint(0, 999)),
                           "expires_at %d" % s, "created=%d%03d" % (s, R.randint(0, 999))]))
    if k == "duration":
        return ng(k, pick(["took %d ms" % R.randint(1, 99999), "elapsed=00:%02d:%02d.%03d" % (R.randint(0, 59), R.randint(0, 59), R.randint(0, 999)),
                           "uptime %dd %02d:%02d:%02d" % (R.randint(1, 400), R.randint(0, 23), R.randint(0, 59), R.randint(0, 59)),
                           "latency_us=%d" % R.randint(100, 10 ** 7), "retry in %ds" % R.randint(1, 3600)]))
    if k == "bytes":
        return ng(k, pick(["processed %d bytes" % R.randint(10 ** 6, 10 ** 11), "rx_bytes=%d" % R.randint(10 ** 6, 10 ** 12),
                           "size=%d" % R.randint(10 ** 3, 10 ** 10), "wrote %d buffers (%.1f%%)" % (R.randint(1, 99999), R.uniform(0, 100))]))
    if k == "port":
        return ng(k, pick(["listening on :%d" % R.randint(1024, 65535), "postgres://db-7.internal:5432/app",
                           "upstream %s:%d" % (pick(HOSTS), R.randint(1024, 65535))]))
    if k == "metric":
        return ng(k, "cpu=%.1f mem=%.1f load1=%.2f p99=%.1fms iops=%d" % (R.uniform(0, 100), R.uniform(0, 100),
                                                                          R.uniform(0, 16), R.uniform(1, 999),
                                                                          R.randint(1, 99999)))
    if k == "oid":
        return ng(k, pick(["SNMP OID 1.3.6.1.4.1.%d.%d.%d.%d" % (R.randint(1, 60000), R.randint(1, 20), R.randint(1, 9), R.randint(1, 99)),
                           "oid=%d" % R.randint(16384, 10 ** 6), "relfilenode %d" % R.randint(16384, 10 ** 7),
                           "1.2.840.113549.1.1.%d" % R.randint(1, 14)]))
    if k == "pid":
        return ng(k, pick(["pid=%d" % R.randint(2, 4194304), "[pid %d]" % R.randint(2, 99999),
                           "process %d exited with status %d" % (R.randint(2, 99999), R.randint(0, 255))]))
    if k == "hexaddr":
        return ng(k, pick(["segfault at 0x%s" % hexs(12), "segfault at %s ip %s sp %s error 4" % (hexs(16), hexs(16), hexs(16)),
                           "ptr=0x%s" % hexs(16)]))
    if k == "nonluhn":
        n = R.randint(10, 16)
        return ng(k, pick(["txn_ref=%s", "trace %s", "batch %s settled", "confirmation number %s"]) % non_luhn(n))
    if k == "date":
        y, m, d = R.randint(2019, 2027), R.randint(1, 12), R.randint(1, 28)
        return ng(k, pick(["%d-%02d-%02d" % (y, m, d), "%02d/%02d/%d" % (d, m, y), "%02d.%02d.%d" % (d, m, y),
                           "%02d/%02d/%d" % (m, d, y), "%d/%02d/%02d" % (y, m, d)]))
    if k == "isbn":
        return ng(k, pick(["ISBN 978-3-16-148410-0", "ISBN-10 0-306-40615-2", "isbn=9780306406157",
                           "ISBN 978-1-4028-9462-6"]))
    if k == "phoneshape":
        loc = pick(LOCALES)
        _, p = valid_phone(loc)
        digits = "".join(groups_of(p))
        return ng(k, pick(["processed %s bytes", "seq=%s", "inode %s reclaimed", "offset %s", "msg_id=%s",
                           "checksum %s ok", "row %s updated"]) % digits)
    if k == "namelike":
        return ng(k, pick(["Dear Customer,", "Dear Valued Customer,", "Dear Sir or Madam,", "Hi Team,", "Hi all,",
                           "Hello World", "assigned to: Platform Team", "assigned to: SRE On-Call",
                           "assigned to: Unassigned", "by Kubernetes", "by PostgreSQL", "by Cron Daemon",
                           "by Prometheus Alertmanager", "for Monday", "for January", "for Production",
                           "for Amazon Web Services", "user=Admin", "user=postgres", "user=Guest", "user=System",
                           "Reported by: Zabbix Server", "Reported by: Health Check", "Owner: Database Team",
                           "Owner: Payments Platform", "cc Ops Team", "cc: Security Office, Service Desk",
                           "acknowledged by Auto Remediation", "closed by Change Manager", "for New York",
                           "Dear Hiring Manager,", "assignee=Network Operations", "Hallo Kollegen,",
                           "Bonjour Support,", "Hola Equipo,", "by Google Chrome", "for Microsoft Azure"]))
    if k == "colons":
        return ng(k, pick(["std::vector<int>::iterator", "Foo::Bar::baz()", "at %02d:%02d:%02d.%03d" % (
            R.randint(0, 23), R.randint(0, 59), R.randint(0, 59), R.randint(0, 999)), "ERROR::RETRY", "ns::cls::fn"]))
    if k == "at-sign":
        return ng(k, pick(["@Override", "ping @here", "npm i @scope/pkg@%d.%d.%d" % (R.randint(1, 9), R.randint(0, 9), R.randint(0, 9)),
                           "field @timestamp missing", "decorator @app.route", "image nginx@sha256:%s" % hexs(16)]))
    # fingerprint: an SSH host key's MD5 fingerprint (16 hex pairs: MAC-like)
    return ng(k, "host key MD5:" + ":".join(hexs(2) for _ in range(16)))


POSITIVE = [(ph_phone, 30), (ph_email, 17), (ph_card, 16), (ph_person, 15), (ph_iban, 5), (ph_ssn, 4),
            (ph_ipv4, 6), (ph_ipv6, 3), (ph_mac, 3), (ph_secret, 3)]


def positive_phrase():
    fns, ws = zip(*POSITIVE)
    return R.choices(fns, ws)[0]()


def gen(n_lines, neg_share):
    out = []
    for i in range(n_lines):
        if R.random() < neg_share:
            phs = [neg_phrase() for _ in range(R.choice([1, 1, 2, 3]))]
        else:
            phs = [positive_phrase() for _ in range(R.choice([1, 1, 1, 2]))]
            if chance(0.3):
                phs.insert(R.randint(0, len(phs)), neg_phrase())
            # A phrase made for an access-log request line stands alone.
            alone = [ph for ph in phs if ph.only == {"access"}]
            if alone:
                phs = alone[:1]
        line = build_line(phs)
        text = line.text()
        spans = sorted(line.spans, key=lambda s: s["start"])
        for a, b in zip(spans, spans[1:]):
            assert a["end"] <= b["start"], (text, spans)
        tags = sorted(line.tags)
        if not spans:
            tags = [t for t in tags if t.startswith("negative-")]
        out.append({"id": i, "text": text, "spans": spans, "tags": tags})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--negatives", type=float, default=0.4, help="share of lines with no PII")
    a = ap.parse_args()
    init(a.seed)
    rows = gen(a.lines, a.negatives)
    for r in rows:
        sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
    kinds = Counter(s["kind"] for r in rows for s in r["spans"])
    neg = sum(1 for r in rows if not r["spans"])
    nbytes = sum(len(r["text"].encode()) for r in rows)
    print("corpus: %d lines (%d negative, %.0f%%), %d spans, %.2f MB of text; %s"
          % (len(rows), neg, 100 * neg / len(rows), sum(kinds.values()), nbytes / 1e6,
             ", ".join("%s %d" % kv for kv in sorted(kinds.items()))), file=sys.stderr)


if __name__ == "__main__":
    main()
