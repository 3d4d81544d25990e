#!/usr/bin/env python3
"""Flickr30K Karpathy split -> ALBEF's retrieval manifests.

Input: Karpathy's `dataset_flickr30k.json` (from his caption_datasets archive):

    {"images": [{"filename": "1000092795.jpg", "imgid": 0, "split": "train" | "val" | "test",
                 "sentences": [{"raw": "Two young guys ...", ...}, ...], ...}, ...],
     "dataset": "flickr30k"}

Output, in --out-dir (image paths are `<prefix><filename>`, relative to the
folder holding flickr30k-images/, which becomes `image_root`):

    flickr30k_train.json  [{"image", "caption": str, "image_id": <imgid>}]  one entry per caption
    flickr30k_val.json    [{"image", "caption": [str, ...]}]               one entry per image
    flickr30k_test.json   [{"image", "caption": [str, ...]}]

Usage: python3 convert.py --input dataset_flickr30k.json --out-dir data/flickr30k
"""

import argparse
import json
import sys
from pathlib import Path


def fail(message):
    sys.exit(f"error: {message}")


def field(record, key, where):
    if key not in record:
        fail(f"{where}: missing key {key!r}")
    return record[key]


def write_entries(path, entries):
    """A JSON array with one entry per line (so `file:line` names an entry)."""
    text = ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
    path.write_text(f"[\n{text}\n]\n", encoding="utf-8")
    print(f"{path}: {len(entries)} entries")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="dataset_flickr30k.json")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--prefix", default="flickr30k-images/",
                        help="put before each file name (default: %(default)s)")
    args = parser.parse_args()

    if not args.input.is_file():
        fail(f"{args.input}: no such file")
    try:
        data = json.loads(args.input.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        fail(f"{args.input}: not JSON: {e}")

    splits = {"train": [], "val": [], "test": []}
    for i, image in enumerate(field(data, "images", str(args.input))):
        where = f"{args.input}: images[{i}]"
        path = args.prefix + field(image, "filename", where)
        captions = [field(s, "raw", f"{where}.sentences").strip()
                    for s in field(image, "sentences", where)]
        split = field(image, "split", where)
        if split not in splits:
            fail(f"{where}: unknown split {split!r}")
        if split == "train":
            image_id = field(image, "imgid", where)
            splits[split] += [{"image": path, "caption": c, "image_id": image_id} for c in captions]
        else:
            splits[split].append({"image": path, "caption": captions})

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split, entries in splits.items():
        write_entries(args.out_dir / f"flickr30k_{split}.json", entries)


if __name__ == "__main__":
    main()
