#!/usr/bin/env python3
"""RefCOCO+ (UNC split, lichengunc/refer layout) -> ALBEF's grounding manifests.

Inputs, from the refer toolkit's `data/refcoco+/` folder:

  refs(unc).p     a pickled list of refs: {"ref_id", "ann_id", "image_id",
                  "split": "train" | "val" | "testA" | "testB",
                  "sentences": [{"sent": str, ...}], ...}
                  (a .json file holding the same list is read as JSON)
  instances.json  COCO-style {"images": [{"id", "file_name", ...}],
                  "annotations": [{"id", "bbox": [x, y, w, h], ...}]}

Outputs, in --out-dir (image paths `<prefix><file_name>`, relative to the COCO
images folder, the config's `image_root`):

  refcoco+_train.json  [{"image", "text"}]              one entry per sentence
  refcoco+_val.json    [{"image", "text", "ref_id"}]
  refcoco+_test.json   [{"image", "text", "ref_id"}]    testA then testB
  refs.json            {"<ref_id>": {"image_id", "split", "bbox": [x, y, w, h]}}
                       the true box of every val/test ref

`dets.json` (candidate boxes per image id) is not made here: take ALBEF's.

Usage: python3 convert.py --refs 'refer/data/refcoco+/refs(unc).p' \
           --instances refer/data/refcoco+/instances.json --out-dir data/refcoco+
"""

import argparse
import json
import pickle
import sys
from pathlib import Path


class PlainUnpickler(pickle.Unpickler):
    """Loads plain lists, dicts, strings and numbers only: never runs code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not plain data)")


def fail(message):
    sys.exit(f"error: {message}")


def field(record, key, where):
    if key not in record:
        fail(f"{where}: missing key {key!r}")
    return record[key]


def load_refs(path):
    if not path.is_file():
        fail(f"{path}: no such file")
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    with path.open("rb") as f:
        try:
            return PlainUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            fail(f"{path}: {e}")


def write(path, text, count):
    path.write_text(text, encoding="utf-8")
    print(f"{path}: {count} entries")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=Path, required=True, help="refs(unc).p (or the same list as .json)")
    parser.add_argument("--instances", type=Path, required=True, help="instances.json")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--prefix", default="train2014/", help="put before each file name (default: %(default)s)")
    args = parser.parse_args()

    refs = load_refs(args.refs)
    if not args.instances.is_file():
        fail(f"{args.instances}: no such file")
    instances = json.loads(args.instances.read_text(encoding="utf-8"))
    files = {field(i, "id", f"{args.instances}: images"): i["file_name"]
             for i in field(instances, "images", str(args.instances))}
    boxes = {field(a, "id", f"{args.instances}: annotations"): a["bbox"]
             for a in field(instances, "annotations", str(args.instances))}

    splits = {"train": [], "val": [], "testA": [], "testB": []}
    truth = {}
    for i, ref in enumerate(refs):
        where = f"{args.refs}: [{i}]"
        ref_id, split = field(ref, "ref_id", where), field(ref, "split", where)
        image_id, ann_id = field(ref, "image_id", where), field(ref, "ann_id", where)
        if split not in splits:
            fail(f"{where}: unknown split {split!r}")
        if image_id not in files or ann_id not in boxes:
            fail(f"{where}: image {image_id} or annotation {ann_id} is not in {args.instances}")
        for sentence in field(ref, "sentences", where):
            entry = {"image": args.prefix + files[image_id], "text": field(sentence, "sent", where)}
            splits[split].append(entry if split == "train" else {**entry, "ref_id": ref_id})
        if split != "train":
            truth[str(ref_id)] = {"image_id": image_id, "split": split, "bbox": boxes[ann_id]}

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, entries in (("train", splits["train"]), ("val", splits["val"]),
                          ("test", splits["testA"] + splits["testB"])):
        text = ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
        write(args.out_dir / f"refcoco+_{name}.json", f"[\n{text}\n]\n", len(entries))
    text = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in truth.items())
    write(args.out_dir / "refs.json", f"{{\n{text}\n}}\n", len(truth))


if __name__ == "__main__":
    main()
