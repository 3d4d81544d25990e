#!/usr/bin/env python3
"""Aligned plain-text files -> the `english<TAB>target` TSV of AltCLIP stage 1.

Input: pairs of sentence-aligned text files, line i of the English file being
the translation of line i of the other (OPUS's "Moses" downloads, e.g.
`News-Commentary.de-en.en` + `News-Commentary.de-en.de`, and WMT's training
data come this way). Give the English file first in each pair.

Output: one `english<TAB>target` line per pair, the pairs of each file pair in
order, UTF-8. Tabs and runs of white space inside a sentence become one space;
pairs with an empty side, longer than --max-chars on either side, or (with
--dedupe) whose English sentence was seen before, are left out and counted.

Usage: python3 convert.py --out parallel.tsv corpus.en-zh.en corpus.en-zh.zh [EN2 TGT2 ...]
"""

import argparse
import sys
from pathlib import Path


def fail(message):
    sys.exit(f"error: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+", help="ENGLISH TARGET [ENGLISH TARGET ...]")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-chars", type=int, default=300, help="longest side kept (default: %(default)s)")
    parser.add_argument("--dedupe", action="store_true", help="keep one pair per English sentence")
    args = parser.parse_args()

    if len(args.files) % 2:
        fail("give the files in pairs: ENGLISH TARGET [ENGLISH TARGET ...]")
    for path in args.files:
        if not path.is_file():
            fail(f"{path}: no such file")
    lines, seen, left_out = [], set(), 0
    for english, target in zip(args.files[::2], args.files[1::2]):
        sources = english.read_text(encoding="utf-8").splitlines()
        targets = target.read_text(encoding="utf-8").splitlines()
        if len(sources) != len(targets):
            fail(f"{english} has {len(sources)} lines but {target} has {len(targets)}: not aligned")
        for source, translation in zip(sources, targets):
            source, translation = " ".join(source.split()), " ".join(translation.split())
            if (not source or not translation or max(len(source), len(translation)) > args.max_chars
                    or (args.dedupe and source in seen)):
                left_out += 1
                continue
            seen.add(source)
            lines.append(f"{source}\t{translation}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(lines), encoding="utf-8")
    print(f"{args.out}: {len(lines)} pairs; {left_out} left out")


if __name__ == "__main__":
    main()
