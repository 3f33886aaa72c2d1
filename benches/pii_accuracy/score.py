#!/usr/bin/env python3
"""Score PII predictions against the corpus's gold spans, systems side by side.

Matching rule (per line, per kind; offsets in characters):
  * a gold span is FOUND when one predicted span of the same kind covers all
    of its characters except at most one at each edge
    (pred.start <= gold.start + 1 and pred.end >= gold.end - 1);
  * a predicted span is a FALSE POSITIVE when it overlaps no gold span of its
    kind. A prediction that overlaps a gold span of its kind without covering
    it is not a false positive, but that gold span is still a miss.
  precision = (predictions - false positives) / predictions
  recall    = found / gold spans
  F1        = 2PR / (P + R)
Predictions on negative lines (lines without any gold span) are also counted
on their own.

Usage:
  score.py --gold corpus.jsonl --pred aegis=preds_aegis.jsonl --pred presidio=preds_presidio.jsonl \
           [--md results.md] [--debug debug.txt] [--examples 30] [--min-score NAME=0.5]
"""

import argparse
import json
import sys
from collections import Counter, defaultdict

RULE = ("A gold span counts as found when one predicted span of the same kind covers all its characters except "
        "at most one at each edge; a predicted span that overlaps no gold span of its kind is a false positive.")
KIND_ORDER = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IPV4", "IPV6", "MAC_ADDRESS", "PERSON", "SECRET",
              "JWT"]
PRETTY = {"aegis": "pg_aegis", "presidio": "Presidio"}


def load(path):
    with open(path, encoding="utf-8") as f:
        return {r["id"]: r for r in (json.loads(l) for l in f if l.strip())}


def covers(p, g):
    return p["start"] <= g["start"] + 1 and p["end"] >= g["end"] - 1


def overlaps(p, g):
    return p["start"] < g["end"] and g["start"] < p["end"]


def fmt(x):
    return "–" if x is None else "%.3f" % x


def ratio(a, b):
    return a / b if b else None


def f1(p, r):
    if p is None or r is None or p + r == 0:
        return None if p is None or r is None else 0.0
    return 2 * p * r / (p + r)


def snippet(text, s, e, width=60):
    a, b = max(0, s - width), min(len(text), e + width)
    out = text[a:s] + "⟦" + text[s:e] + "⟧" + text[e:b]
    return ("…" if a else "") + out.replace("\n", "⏎").replace("\t", "⇥") + ("…" if b < len(text) else "")


def score(gold, preds, min_score=None):
    st = {
        "support": Counter(), "found": Counter(), "npred": Counter(), "fp": Counter(), "partial": Counter(),
        "fp_neg": Counter(), "tag_support": Counter(), "tag_found": Counter(),
        "neg_lines_hit": 0, "neg_lines": 0, "misses": defaultdict(list), "fps": defaultdict(list),
    }
    for lid, row in gold.items():
        text = row["text"]
        g_spans = row["spans"]
        p_spans = preds.get(lid, {"spans": []})["spans"]
        if min_score is not None:
            p_spans = [p for p in p_spans if p.get("score", 1.0) >= min_score]
        negative = not g_spans
        if negative:
            st["neg_lines"] += 1
            if p_spans:
                st["neg_lines_hit"] += 1
        for g in g_spans:
            k = g["kind"]
            st["support"][k] += 1
            ok = any(p["kind"] == k and covers(p, g) for p in p_spans)
            for t in g.get("tags", []):
                st["tag_support"][(k, t)] += 1
                if ok:
                    st["tag_found"][(k, t)] += 1
            if ok:
                st["found"][k] += 1
            else:
                near = [p for p in p_spans if overlaps(p, g)]
                st["misses"][k].append((lid, snippet(text, g["start"], g["end"]), g.get("tags", []),
                                        ["%s %r" % (p["kind"], text[p["start"]:p["end"]]) for p in near]))
        for p in p_spans:
            k = p["kind"]
            st["npred"][k] += 1
            same = [g for g in g_spans if g["kind"] == k and overlaps(p, g)]
            if not same:
                st["fp"][k] += 1
                if negative:
                    st["fp_neg"][k] += 1
                st["fps"][k].append((lid, snippet(text, p["start"], p["end"]), row.get("tags", []),
                                     ["%s %r" % (g["kind"], text[g["start"]:g["end"]]) for g in g_spans
                                      if overlaps(p, g)]))
            elif not any(covers(p, g) for g in same):
                st["partial"][k] += 1
    return st


def kinds_of(stats):
    ks = set()
    for st in stats.values():
        ks |= set(st["support"]) | set(st["npred"])
    return sorted(ks, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else 99, k))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gold", required=True)
    ap.add_argument("--pred", action="append", required=True, help="NAME=preds.jsonl (repeatable, in column order)")
    ap.add_argument("--md", help="also write the Markdown report here")
    ap.add_argument("--debug", help="write misses and false positives here")
    ap.add_argument("--examples", type=int, default=30, help="misses/false positives listed per kind and system")
    ap.add_argument("--min-score", action="append", default=[], help="NAME=S: drop NAME's predictions scored below S")
    ap.add_argument("--note", action="append", default=[], help="a line added under the title (repeatable)")
    ap.add_argument("--unsupported", action="append", default=[],
                    help="NAME=KIND,KIND: kinds NAME has no recognizer for (shown as n/a)")
    a = ap.parse_args()

    gold = load(a.gold)
    min_scores = dict((kv.split("=")[0], float(kv.split("=")[1])) for kv in a.min_score)
    unsupported = {kv.split("=")[0]: set(kv.split("=")[1].split(",")) for kv in a.unsupported}
    na = lambda s, k: k in unsupported.get(s, ())  # noqa: E731
    systems = []
    stats = {}
    for kv in a.pred:
        name, path = kv.split("=", 1)
        systems.append(name)
        stats[name] = score(gold, load(path), min_scores.get(name))
    names = [PRETTY.get(s, s) + (" (score ≥ %g)" % min_scores[s] if s in min_scores else "") for s in systems]
    kinds = kinds_of(stats)
    n_neg = sum(1 for r in gold.values() if not r["spans"])

    md = []
    w = md.append
    w("## PII accuracy: %s" % " vs ".join(names))
    w("")
    w("Corpus: %d lines (%d without PII), %d gold spans. %s" % (len(gold), n_neg,
                                                                 sum(stats[systems[0]]["support"].values()), RULE))
    for n in a.note:
        w("")
        w(n)
    w("")
    head = "| kind | support |" + "".join(" %s P | %s R | %s F1 |" % (n, n, n) for n in names)
    w(head)
    w("|" + "---|" * (2 + 3 * len(systems)))
    for k in kinds:
        cells = ["%s" % k, "%d" % stats[systems[0]]["support"][k]]
        for s in systems:
            st = stats[s]
            p = ratio(st["npred"][k] - st["fp"][k], st["npred"][k])
            r = ratio(st["found"][k], st["support"][k]) if st["support"][k] else None
            if na(s, k):
                cells += ["n/a", "n/a", "n/a"]
                continue
            cells += [fmt(p), fmt(r), fmt(f1(p, r))]
        w("| " + " | ".join(cells) + " |")
    # micro average over the kinds in the gold set
    cells = ["**all**", "%d" % sum(stats[systems[0]]["support"].values())]
    for s in systems:
        st = stats[s]
        npred, fp = sum(st["npred"].values()), sum(st["fp"].values())
        p, r = ratio(npred - fp, npred), ratio(sum(st["found"].values()), sum(st["support"].values()))
        cells += ["**%s**" % fmt(p), "**%s**" % fmt(r), "**%s**" % fmt(f1(p, r))]
    w("| " + " | ".join(cells) + " |")
    w("")
    w("Counts: predictions, false positives (of which on lines without PII), partial overlaps (neither found nor "
      "false positive).")
    w("")
    w("| kind |" + "".join(" %s pred | %s FP (neg) | %s partial |" % (n, n, n) for n in names))
    w("|" + "---|" * (1 + 3 * len(systems)))
    for k in kinds:
        cells = [k]
        for s in systems:
            st = stats[s]
            cells += ["%d" % st["npred"][k], "%d (%d)" % (st["fp"][k], st["fp_neg"][k]), "%d" % st["partial"][k]]
        w("| " + " | ".join(cells) + " |")
    w("")
    w("Lines without PII that a system flags: " + ", ".join(
        "%s %d of %d" % (n, stats[s]["neg_lines_hit"], stats[s]["neg_lines"]) for s, n in zip(systems, names)) + ".")
    w("")
    w("Recall on plain values and on obfuscated ones (encoded, unusual separators or prefixes, glued, "
      "lower-case, bare digits after a context word; see the per-format table):")
    w("")
    w("| kind |" + "".join(" %s plain | %s obfuscated |" % (n, n) for n in names))
    w("|" + "---|" * (1 + 2 * len(systems)))
    for k in kinds:
        if not stats[systems[0]]["support"][k]:
            continue
        cells = [k]
        for s in systems:
            for t in ("plain", "obfuscated"):
                sup = stats[s]["tag_support"][(k, t)]
                cells.append("n/a" if na(s, k) else "%s (%d)" % (fmt(ratio(stats[s]["tag_found"][(k, t)], sup)), sup)
                             if sup else "–")
        w("| " + " | ".join(cells) + " |")
    w("")
    w("### Recall by format (tag)")
    w("")
    w("| kind | tag | support |" + "".join(" %s R |" % n for n in names))
    w("|" + "---|" * (3 + len(systems)))
    tags = sorted(stats[systems[0]]["tag_support"],
                  key=lambda kt: (KIND_ORDER.index(kt[0]) if kt[0] in KIND_ORDER else 99, kt[1]))
    for k, t in tags:
        sup = stats[systems[0]]["tag_support"][(k, t)]
        cells = [k, t, "%d" % sup]
        for s in systems:
            if na(s, k):
                cells.append("n/a")
            else:
                cells.append(fmt(ratio(stats[s]["tag_found"][(k, t)], sup)))
        w("| " + " | ".join(cells) + " |")
    report = "\n".join(md) + "\n"
    sys.stdout.write(report)
    if a.md:
        with open(a.md, "w", encoding="utf-8") as f:
            f.write(report)

    if a.debug:
        with open(a.debug, "w", encoding="utf-8") as f:
            f.write("# %s\n# ⟦…⟧ marks the gold span (misses) or the predicted span (false positives).\n" % RULE)
            for s, n in zip(systems, names):
                st = stats[s]
                for k in kinds:
                    for title, items, total in (("MISSES", st["misses"][k], st["support"][k] - st["found"][k]),
                                                ("FALSE POSITIVES", st["fps"][k], st["fp"][k])):
                        if not total:
                            continue
                        f.write("\n== %s %s %s: %d (first %d)\n" % (n, k, title, total, min(total, a.examples)))
                        # spread the examples over the formats: round-robin by first tag
                        by_tag = defaultdict(list)
                        for it in items:
                            by_tag[tuple(it[2][:1])].append(it)
                        chosen, queues = [], [list(v) for _, v in sorted(by_tag.items())]
                        while len(chosen) < a.examples and any(queues):
                            for q in queues:
                                if q and len(chosen) < a.examples:
                                    chosen.append(q.pop(0))
                        for lid, snip, tg, near in chosen:
                            f.write("  #%d [%s] %s%s\n" % (lid, ",".join(tg), snip,
                                                           ("   overlapping: " + "; ".join(near)) if near else ""))


if __name__ == "__main__":
    main()
