#!/usr/bin/env python3
"""Run Microsoft Presidio's pattern recognizers over the accuracy corpus.

Presidio's AnalyzerEngine, with a registry holding only its predefined
pattern/rule recognizers and the NoOpNlpEngine (no spaCy model: none can be
downloaded here, and the pattern recognizers do not need one). Without NLP
artifacts the context enhancer cannot read context words from the text, so
scores are the recognizers' own; spans do not depend on it.

PERSON is not available: Presidio finds names only through an NER model
(SpacyRecognizer and friends), not through a pattern recognizer.

Writes predictions JSONL {"id", "spans": [{"start", "end", "kind", "score"}]}
with Presidio's entity names mapped to ours. Offsets are Python string
indices (code points), like the corpus. Throughput goes to stderr.

Usage: run_presidio.py [--threshold 0.0] < corpus.jsonl > preds.jsonl
"""

import argparse
import json
import logging
import sys
import time

# EmailRecognizer validates the TLD with tldextract, whose default extractor
# first tries to download the Public Suffix List (and logs a traceback per
# failure). Use the snapshot bundled with tldextract instead: no network.
import tldextract

tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
tldextract.tldextract.extract = tldextract.extract

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: E402
from presidio_analyzer.nlp_engine import NoOpNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

import ipaddress  # noqa: E402

ENTITY_MAP = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "MAC_ADDRESS": "MAC_ADDRESS",
    # IP_ADDRESS -> IPV4 or IPV6 by content. UrlRecognizer is left out: URL is
    # not one of our kinds (it would also claim the domain of every email).
}


def ip_kind(s):
    try:
        return "IPV6" if isinstance(ipaddress.ip_address(s.strip("[]")), ipaddress.IPv6Address) else "IPV4"
    except ValueError:
        return "IPV6" if s.count(":") >= 2 else "IPV4"


def build():
    recognizers = [EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), IbanRecognizer(), IpRecognizer(),
                   UsSsnRecognizer(), MacAddressRecognizer()]
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    nlp = NoOpNlpEngine([{"lang_code": "en", "model_name": "none"}])
    nlp.load()
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"]), recognizers


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=0.0,
                    help="score threshold (default 0.0, AnalyzerEngine's default_score_threshold)")
    a = ap.parse_args()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

    engine, recognizers = build()
    entities = sorted({e for r in recognizers for e in r.supported_entities})
    rows = [json.loads(l) for l in sys.stdin if l.strip()]
    unmapped = {}
    out = []
    t0 = time.perf_counter()
    for row in rows:
        text = row["text"]
        res = engine.analyze(text=text, language="en", entities=entities, score_threshold=a.threshold)
        spans = []
        for r in res:
            if r.entity_type == "IP_ADDRESS":
                kind = ip_kind(text[r.start:r.end])
            else:
                kind = ENTITY_MAP.get(r.entity_type)
            if kind is None:
                unmapped[r.entity_type] = unmapped.get(r.entity_type, 0) + 1
                continue
            spans.append({"start": r.start, "end": r.end, "kind": kind, "score": round(r.score, 3)})
        spans.sort(key=lambda s: (s["start"], s["end"]))
        out.append({"id": row["id"], "spans": spans})
    secs = time.perf_counter() - t0
    for o in out:
        sys.stdout.write(json.dumps(o) + "\n")
    nbytes = sum(len(r["text"].encode()) for r in rows)
    import presidio_analyzer  # noqa: E402
    version = getattr(presidio_analyzer, "__version__", None)
    if version is None:
        from importlib.metadata import version as v
        version = v("presidio-analyzer")
    print("presidio: %d lines, %.2f MB in %.2f s: %.2f MB/s%s"
          % (len(rows), nbytes / 1e6, secs, nbytes / secs / 1e6, "; unmapped: %s" % unmapped if unmapped else ""),
          file=sys.stderr)
    print("config: presidio-analyzer %s, AnalyzerEngine with NoOpNlpEngine and the pattern recognizers "
          "%s (PhoneRecognizer regions %s); score threshold %g (AnalyzerEngine's default); PERSON and SECRET not "
          "available (names need an NER model; no password recognizer)"
          % (version, ", ".join(type(r).__name__ for r in recognizers),
             ",".join(next(r for r in recognizers if isinstance(r, PhoneRecognizer)).supported_regions),
             a.threshold), file=sys.stderr)


if __name__ == "__main__":
    main()
