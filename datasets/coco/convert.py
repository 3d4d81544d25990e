#!/usr/bin/env python3
"""COCO Karpathy split -> ALBEF's retrieval and pretraining manifests.

Input: Karpathy's `dataset_coco.json` (from his caption_datasets archive):

    {"images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
                 "cocoid": 391895, "split": "train" | "restval" | "val" | "test",
                 "sentences": [{"raw": "A man riding a moped.", ...}, ...], ...}, ...],
     "dataset": "coco"}

Output, in --out-dir (image paths are `filepath/filename`, relative to the
folder holding train2014/ and val2014/, which becomes `image_root`):

    coco_train.json  [{"image", "caption": str, "image_id": "coco_<cocoid>"}]  train + restval, one entry per caption
    coco_val.json    [{"image", "caption": [str, ...]}]                        one entry per image
    coco_test.json   [{"image", "caption": [str, ...]}]
    coco.json        [{"image", "caption": str}]                               pretraining, the coco_train captions

Usage: python3 convert.py --input dataset_coco.json --out-dir data/coco
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
    parser.add_argument("--input", type=Path, required=True, help="dataset_coco.json")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--no-restval", action="store_true",
                        help="train on the `train` split only (ALBEF uses train + restval)")
    args = parser.parse_args()

    if not args.input.is_file():
        fail(f"{args.input}: no such file")
    try:
        data = json.loads(args.input.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        fail(f"{args.input}: not JSON: {e}")
    images = field(data, "images", str(args.input))

    train_splits = {"train"} if args.no_restval else {"train", "restval"}
    train, val, test = [], [], []
    for i, image in enumerate(images):
        where = f"{args.input}: images[{i}]"
        path = f"{field(image, 'filepath', where)}/{field(image, 'filename', where)}"
        captions = [field(s, "raw", f"{where}.sentences").strip()
                    for s in field(image, "sentences", where)]
        split = field(image, "split", where)
        if split in train_splits:
            image_id = f"coco_{field(image, 'cocoid', where)}"
            train += [{"image": path, "caption": c, "image_id": image_id} for c in captions]
        elif split == "val":
            val.append({"image": path, "caption": captions})
        elif split == "test":
            test.append({"image": path, "caption": captions})
        elif split != "restval":
            fail(f"{where}: unknown split {split!r}")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_entries(args.out_dir / "coco_train.json", train)
    write_entries(args.out_dir / "coco_val.json", val)
    write_entries(args.out_dir / "coco_test.json", test)
    write_entries(args.out_dir / "coco.json",
                  [{"image": e["image"], "caption": e["caption"]} for e in train])


if __name__ == "__main__":
    main()
