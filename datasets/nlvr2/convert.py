#!/usr/bin/env python3
"""NLVR2 JSON-lines annotations -> ALBEF's NLVR manifest.

Input: one of NLVR2's `train.json`, `dev.json`, `test1.json`: one JSON object a line,

    {"identifier": "train-10171-0-0", "sentence": "...", "label": "True" | "False",
     "directory": 70, "left_url": ..., "right_url": ..., ...}

`identifier` is split-set-pair-sentence; the pair's images are
`split-set-pair-img0.png` (left) and `-img1.png` (right). Training images sit in
numbered subfolders (`directory`), the others directly in their split's folder.

Output: [{"images": [left, right], "sentence": str, "label": "True" | "False"}],
paths `<image-dir>[/<directory>]/<name>` relative to the folder holding the
split folders (the config's `image_root`).

Usage: python3 convert.py --input nlvr2/data/train.json --out data/nlvr_train.json
       python3 convert.py --input nlvr2/data/dev.json --out data/nlvr_dev.json
       python3 convert.py --input nlvr2/data/test1.json --out data/nlvr_test.json
"""

import argparse
import json
import sys
from pathlib import Path


def fail(message):
    sys.exit(f"error: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="NLVR2 train.json, dev.json or test1.json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--image-dir", help="folder of the split's images (default: the identifier's split)")
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
        for key in ("identifier", "sentence", "label"):
            if key not in record:
                fail(f"{where}: missing key {key!r}")
        parts = record["identifier"].split("-")
        if len(parts) != 4:
            fail(f"{where}: identifier {record['identifier']!r} is not split-set-pair-sentence")
        if record["label"] not in ("True", "False"):
            fail(f"{where}: label {record['label']!r} is neither 'True' nor 'False'")
        folder = args.image_dir or parts[0]
        if "directory" in record:
            folder = f"{folder}/{record['directory']}"
        pair = "-".join(parts[:3])
        entries.append({"images": [f"{folder}/{pair}-img0.png", f"{folder}/{pair}-img1.png"],
                        "sentence": record["sentence"], "label": record["label"]})

    text = ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"[\n{text}\n]\n", encoding="utf-8")
    print(f"{args.out}: {len(entries)} entries")


if __name__ == "__main__":
    main()
