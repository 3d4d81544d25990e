#!/usr/bin/env python3
"""CC3M, SBU and Visual Genome annotations -> ALBEF pretraining manifests.

Inputs (one subcommand each):

  cc3m  Conceptual Captions TSV (`Train_GCC-training.tsv`, `Validation_GCC-1.1.0-Validation.tsv`):
        one `caption<TAB>url` line per image, no header. Images are ones you
        downloaded, named by line number (0-based) through --pattern.
  sbu   SBU Captions: `SBU_captioned_photo_dataset_urls.txt` and
        `SBU_captioned_photo_dataset_captions.txt`, line i of one matching line i
        of the other. Images named by the URL's file name through --pattern.
  vg    Visual Genome `region_descriptions.json`:
        [{"id": image_id, "regions": [{"phrase": str, "x", "y", "width", "height", ...}]}].
        One entry per image, its distinct region phrases as the caption list.

Output: [{"image": path, "caption": str | [str, ...]}], paths relative to
--image-root (the config's `image_root`). Entries whose image file is not under
--image-root are left out and counted (web images disappear); --no-check
writes them all.

  python3 convert.py cc3m --tsv Train_GCC-training.tsv --image-root data/images \
      --pattern 'cc3m/{index:08d}.jpg' --out data/cc3m_train.json
  python3 convert.py sbu --urls SBU_..._urls.txt --captions SBU_..._captions.txt \
      --image-root data/images --pattern 'sbu/{name}' --out data/sbu.json
  python3 convert.py vg --regions region_descriptions.json --image-root data/images \
      --pattern 'vg/VG_100K/{id}.jpg' --out data/vg.json
"""

import argparse
import json
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse


def fail(message):
    sys.exit(f"error: {message}")


def read_lines(path):
    if not path.is_file():
        fail(f"{path}: no such file")
    return path.read_text(encoding="utf-8").splitlines()


def cc3m(args):
    for number, line in enumerate(read_lines(args.tsv)):
        fields = line.split("\t")
        if len(fields) != 2:
            fail(f"{args.tsv}:{number + 1}: expected `caption<TAB>url`, found {len(fields) - 1} tab(s)")
        yield args.pattern.format(index=number), fields[0].strip()


def sbu(args):
    urls, captions = read_lines(args.urls), read_lines(args.captions)
    if len(urls) != len(captions):
        fail(f"{args.urls} has {len(urls)} lines but {args.captions} has {len(captions)}")
    for number, (url, caption) in enumerate(zip(urls, captions)):
        name = PurePosixPath(urlparse(url.strip()).path).name
        if not name:
            fail(f"{args.urls}:{number + 1}: no file name in {url!r}")
        yield args.pattern.format(index=number, name=name, stem=PurePosixPath(name).stem), caption.strip()


def vg(args):
    if not args.regions.is_file():
        fail(f"{args.regions}: no such file")
    for i, image in enumerate(json.loads(args.regions.read_text(encoding="utf-8"))):
        where = f"{args.regions}: [{i}]"
        if "id" not in image or "regions" not in image:
            fail(f"{where}: missing key 'id' or 'regions'")
        phrases = []
        for region in image["regions"]:
            if "phrase" not in region:
                fail(f"{where}: a region has no 'phrase'")
            phrase = region["phrase"].strip()
            if phrase and phrase not in phrases:
                phrases.append(phrase)
        if phrases:
            yield args.pattern.format(id=image["id"]), phrases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="source", required=True)
    p = sub.add_parser("cc3m", help="Conceptual Captions TSV")
    p.add_argument("--tsv", type=Path, required=True)
    p.add_argument("--pattern", default="cc3m/{index:08d}.jpg",
                   help="image path from the line number {index} (default: %(default)s)")
    p.set_defaults(read=cc3m)
    p = sub.add_parser("sbu", help="SBU Captions URL and caption files")
    p.add_argument("--urls", type=Path, required=True)
    p.add_argument("--captions", type=Path, required=True)
    p.add_argument("--pattern", default="sbu/{name}",
                   help="image path from {name}, {stem} of the URL or {index} (default: %(default)s)")
    p.set_defaults(read=sbu)
    p = sub.add_parser("vg", help="Visual Genome region descriptions")
    p.add_argument("--regions", type=Path, required=True)
    p.add_argument("--pattern", default="VG_100K/{id}.jpg",
                   help="image path from the image {id} (default: %(default)s)")
    p.set_defaults(read=vg)
    for p in sub.choices.values():
        p.add_argument("--image-root", type=Path, required=True,
                       help="folder the image paths are relative to")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--no-check", action="store_true",
                       help="keep entries whose image file is missing")
    args = parser.parse_args()

    if not args.no_check and not args.image_root.is_dir():
        fail(f"{args.image_root}: no such folder")
    entries, missing = [], 0
    try:
        for image, caption in args.read(args):
            if not caption:
                continue
            if not args.no_check and not (args.image_root / image).is_file():
                missing += 1
                continue
            entries.append({"image": image, "caption": caption})
    except (KeyError, IndexError, ValueError) as e:
        fail(f"--pattern {args.pattern!r} does not fit {args.source}: {e!r}")
    text = ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"[\n{text}\n]\n", encoding="utf-8")
    print(f"{args.out}: {len(entries)} entries; {missing} left out (image missing)")


if __name__ == "__main__":
    main()
