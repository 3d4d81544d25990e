#!/usr/bin/env python3
"""SNLI-VE JSON-lines annotations -> ALBEF's visual-entailment manifest.

Input: `snli_ve_train.jsonl`, `snli_ve_dev.jsonl` or `snli_ve_test.jsonl`, one JSON
object a line (the key `Flikr30kID` is spelt so in the data set):

    {"Flikr30kID": "1234567890.jpg", "sentence1": premise caption (unused),
     "sentence2": hypothesis, "gold_label": "entailment" | "neutral" | "contradiction", ...}

Output: [{"image": str, "sentence": hypothesis, "label": gold_label}].

As in ALBEF's files, `image` is the Flickr30K id without `.jpg` (the reader adds
it back); other extensions, and `.jpg` under --keep-jpg, are kept. --prefix is
put in front (e.g. `flickr30k-images/` when `image_root` is the folder above).

Usage: python3 convert.py --input snli_ve_train.jsonl --out data/ve_train.json
"""

import argparse
import json
import sys
from pathlib import Path

LABELS = ("entailment", "neutral", "contradiction")


def fail(message):
    sys.exit(f"error: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="snli_ve_<split>.jsonl")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prefix", default="", help="put before each image name")
    parser.add_argument("--keep-jpg", action="store_true", help="keep the .jpg extension")
    args = parser.parse_args()

    if not args.input.is_file():
        fail(f"{args.input}: no such file")
    entries = []
    for number, line in enumerate(args.input.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{args.input}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"{where}: not JSON: {e}")
        for key in ("Flikr30kID", "sentence2", "gold_label"):
            if key not in record:
                fail(f"{where}: missing key {key!r}")
        if record["gold_label"] not in LABELS:
            fail(f"{where}: gold_label {record['gold_label']!r} is not one of {', '.join(LABELS)}")
        image = str(record["Flikr30kID"])
        if image.endswith(".jpg") and not args.keep_jpg:
            image = image[:-len(".jpg")]
        entries.append({"image": args.prefix + image, "sentence": record["sentence2"],
                        "label": record["gold_label"]})

    text = ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"[\n{text}\n]\n", encoding="utf-8")
    print(f"{args.out}: {len(entries)} entries")


if __name__ == "__main__":
    main()
