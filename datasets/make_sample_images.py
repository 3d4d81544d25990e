#!/usr/bin/env python3
"""Draws the small PNG pictures of the shipped samples (datasets/*/sample/).

Each picture is 32 x 32 RGB: a plain background with one or two filled
shapes (a square or a circle) whose boxes are listed below, so that the
captions, questions, statements and boxes of the samples are true of the
pictures. The PNG encoder is written here with zlib and struct only.

    python3 datasets/make_sample_images.py           # (re)write every picture
    python3 datasets/make_sample_images.py --check   # verify they are up to date

Boxes are [x, y, width, height] in pixels, as in COCO.
"""

import argparse
import struct
import sys
import zlib
from pathlib import Path

SIDE = 32

WHITE = (245, 245, 245)
GREY = (128, 128, 128)
BLACK = (20, 20, 20)
RED = (220, 30, 30)
GREEN = (30, 160, 40)
BLUE = (30, 60, 220)
YELLOW = (240, 210, 20)
PURPLE = (140, 40, 190)
ORANGE = (250, 140, 20)

CENTRE = (8, 8, 16, 16)

# path (relative to datasets/) -> (background, [(shape, colour, box), ...])
PICTURES = {
    # COCO (Karpathy split): train, restval, val, val, test, test.
    "coco/sample/train2014/COCO_train2014_000000000009.png": (WHITE, [("circle", RED, CENTRE)]),
    "coco/sample/val2014/COCO_val2014_000000000042.png": (WHITE, [("square", BLUE, CENTRE)]),
    "coco/sample/val2014/COCO_val2014_000000000073.png": (GREY, [("circle", GREEN, CENTRE)]),
    "coco/sample/val2014/COCO_val2014_000000000074.png": (GREY, [("square", YELLOW, CENTRE)]),
    "coco/sample/val2014/COCO_val2014_000000000133.png": (WHITE, [("circle", PURPLE, CENTRE)]),
    "coco/sample/val2014/COCO_val2014_000000000136.png": (WHITE, [("square", ORANGE, CENTRE)]),
    # Flickr30K (Karpathy split): train, train, val, val, test, test.
    "flickr30k/sample/flickr30k-images/1000000001.png": (BLACK, [("square", RED, CENTRE)]),
    "flickr30k/sample/flickr30k-images/1000000002.png": (
        WHITE, [("circle", BLUE, (2, 10, 12, 12)), ("circle", BLUE, (18, 10, 12, 12))]),
    "flickr30k/sample/flickr30k-images/1000000003.png": (WHITE, [("square", GREEN, CENTRE)]),
    "flickr30k/sample/flickr30k-images/1000000004.png": (BLACK, [("circle", WHITE, CENTRE)]),
    "flickr30k/sample/flickr30k-images/1000000005.png": (GREY, [("circle", YELLOW, CENTRE)]),
    "flickr30k/sample/flickr30k-images/1000000006.png": (WHITE, [("square", PURPLE, CENTRE)]),
    # Pretraining sources: CC3M, SBU, Visual Genome.
    "pretrain-4m/sample/cc3m/00000000.png": (WHITE, [("circle", RED, CENTRE)]),
    "pretrain-4m/sample/cc3m/00000001.png": (WHITE, [("square", BLUE, CENTRE)]),
    "pretrain-4m/sample/sbu/4385058960_b0f291553e.png": (GREY, [("circle", ORANGE, CENTRE)]),
    "pretrain-4m/sample/sbu/4385058961_c1a302664f.png": (BLACK, [("square", YELLOW, CENTRE)]),
    "pretrain-4m/sample/vg/VG_100K/1.png": (
        WHITE, [("circle", RED, (2, 10, 12, 12)), ("square", BLUE, (18, 10, 12, 12))]),
    "pretrain-4m/sample/vg/VG_100K/2.png": (GREY, [("square", GREEN, CENTRE)]),
    # VQA v2 (train2014, val2014, test2015) and Visual Genome QA.
    "vqa-v2/sample/train2014/COCO_train2014_000000000025.png": (
        WHITE, [("circle", RED, (2, 10, 12, 12)), ("square", BLUE, (18, 10, 12, 12))]),
    "vqa-v2/sample/val2014/COCO_val2014_000000000042.png": (
        WHITE, [("circle", GREEN, (2, 10, 12, 12)), ("circle", GREEN, (18, 10, 12, 12))]),
    "vqa-v2/sample/test2015/COCO_test2015_000000000001.png": (GREY, [("square", YELLOW, CENTRE)]),
    "vqa-v2/sample/VG_100K/10.png": (WHITE, [("circle", RED, CENTRE)]),
    # NLVR2: one image pair per split.
    "nlvr2/sample/train/3/train-101-0-img0.png": (
        WHITE, [("circle", RED, (2, 10, 12, 12)), ("circle", RED, (18, 10, 12, 12))]),
    "nlvr2/sample/train/3/train-101-0-img1.png": (
        WHITE, [("circle", RED, (2, 10, 12, 12)), ("square", BLUE, (18, 10, 12, 12))]),
    "nlvr2/sample/dev/dev-201-1-img0.png": (GREY, [("square", GREEN, CENTRE)]),
    "nlvr2/sample/dev/dev-201-1-img1.png": (
        GREY, [("square", GREEN, (2, 10, 12, 12)), ("square", GREEN, (18, 10, 12, 12))]),
    "nlvr2/sample/test1/test1-301-2-img0.png": (WHITE, [("circle", YELLOW, CENTRE)]),
    "nlvr2/sample/test1/test1-301-2-img1.png": (WHITE, [("square", PURPLE, CENTRE)]),
    # SNLI-VE: one Flickr30K image per split.
    "snli-ve/sample/flickr30k-images/2000000001.png": (
        WHITE, [("circle", RED, (2, 10, 12, 12)), ("square", BLUE, (18, 10, 12, 12))]),
    "snli-ve/sample/flickr30k-images/2000000002.png": (GREY, [("circle", GREEN, CENTRE)]),
    "snli-ve/sample/flickr30k-images/2000000003.png": (WHITE, [("square", YELLOW, CENTRE)]),
    # RefCOCO+: two objects per image; the boxes are those of instances.json.
    "refcoco-plus/sample/train2014/COCO_train2014_000000000201.png": (
        WHITE, [("circle", RED, (2, 10, 12, 12)), ("square", BLUE, (18, 10, 12, 12))]),
    "refcoco-plus/sample/train2014/COCO_train2014_000000000202.png": (
        WHITE, [("square", GREEN, (4, 2, 12, 12)), ("circle", YELLOW, (16, 18, 12, 12))]),
    "refcoco-plus/sample/train2014/COCO_train2014_000000000203.png": (
        GREY, [("circle", PURPLE, (3, 3, 10, 10)), ("circle", ORANGE, (18, 18, 12, 12))]),
    "refcoco-plus/sample/train2014/COCO_train2014_000000000204.png": (
        GREY, [("square", WHITE, (6, 16, 10, 10)), ("square", RED, (18, 4, 10, 10))]),
}


def render(background, shapes):
    """Rows of RGB pixels: the background, then each shape filled in its box."""
    rows = [[background] * SIDE for _ in range(SIDE)]
    for shape, colour, (x, y, w, h) in shapes:
        cx, cy, r = x + w / 2, y + h / 2, min(w, h) / 2
        for py in range(y, y + h):
            for px in range(x, x + w):
                if shape == "circle" and (px + 0.5 - cx) ** 2 + (py + 0.5 - cy) ** 2 > r * r:
                    continue
                rows[py][px] = colour
    return rows


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(rows):
    """An 8-bit RGB PNG: IHDR, one IDAT (filter 0 on every row), IEND."""
    height, width = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(c for pixel in row for c in pixel) for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare the pictures on disk instead of writing them")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent
    stale = []
    for name, (background, shapes) in PICTURES.items():
        data = png(render(background, shapes))
        path = root / name
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if stale:
        sys.exit("out of date (run without --check): " + ", ".join(stale))
    print(f"{len(PICTURES)} pictures {'checked' if args.check else 'written'}")


if __name__ == "__main__":
    main()
