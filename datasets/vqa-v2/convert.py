#!/usr/bin/env python3
"""VQA v2 and Visual Genome QA annotations -> ALBEF's VQA manifests.

Inputs (one subcommand each):

  vqa      VQA v2 questions `v2_OpenEnded_mscoco_<subtype>_questions.json`
           {"data_subtype": "train2014", "questions": [{"image_id", "question", "question_id"}]}
           and, except for the test splits, annotations `v2_mscoco_<subtype>_annotations.json`
           {"annotations": [{"question_id", "multiple_choice_answer", "answers": [{"answer"}, ...]}]}.
  answers  The annotations files again: the most frequent `multiple_choice_answer`s.
  vg       Visual Genome `question_answers.json`:
           [{"id": image_id, "qas": [{"qa_id", "question", "answer": "Green."}]}].

Outputs:

  vqa_{train,val}.json  [{"image", "question", "answer": [10 answers], "question_id", "dataset": "vqa"}]
  vqa_test.json         [{"image", "question", "question_id", "dataset": "vqa"}]
  answer_list.json      ["answer", ...], most frequent first
  vg_qa.json            [{"image", "question", "answer": str, "question_id", "dataset": "vg"}]

COCO image paths are `<dir>/COCO_<dir>_<image_id:012d><ext>` (test-dev questions
use the test2015 images), relative to the folder holding train2014/ val2014/
test2015/ (the config's `vqa_root`); VG paths come from --pattern, relative to
`vg_root`.

  python3 convert.py vqa --questions v2_OpenEnded_mscoco_train2014_questions.json \
      --annotations v2_mscoco_train2014_annotations.json --out data/vqa_train.json
  python3 convert.py vqa --questions v2_OpenEnded_mscoco_test2015_questions.json --out data/vqa_test.json
  python3 convert.py answers --annotations v2_mscoco_train2014_annotations.json \
      v2_mscoco_val2014_annotations.json --top 3128 --out data/answer_list.json
  python3 convert.py vg --qa question_answers.json --answer-list data/answer_list.json --out data/vg_qa.json
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path


def fail(message):
    sys.exit(f"error: {message}")


def load(path, key=None):
    if not path.is_file():
        fail(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        fail(f"{path}: not JSON: {e}")
    if key is not None and key not in data:
        fail(f"{path}: missing key {key!r}")
    return data if key is None else data[key]


def field(record, key, where):
    if key not in record:
        fail(f"{where}: missing key {key!r}")
    return record[key]


def write(path, entries):
    """A JSON array with one entry per line (so `file:line` names an entry)."""
    text = ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[\n{text}\n]\n", encoding="utf-8")
    print(f"{path}: {len(entries)} entries")


def vqa(args):
    subtype = load(args.questions, "data_subtype")
    image_dir = "test2015" if subtype.startswith("test") else subtype
    answers = {}
    if args.annotations:
        for i, a in enumerate(load(args.annotations, "annotations")):
            where = f"{args.annotations}: annotations[{i}]"
            answers[field(a, "question_id", where)] = [
                field(x, "answer", where) for x in field(a, "answers", where)]
    entries = []
    for i, q in enumerate(load(args.questions, "questions")):
        where = f"{args.questions}: questions[{i}]"
        qid = field(q, "question_id", where)
        image = f"{image_dir}/COCO_{image_dir}_{field(q, 'image_id', where):012d}{args.ext}"
        entry = {"image": image, "question": field(q, "question", where)}
        if args.annotations:
            if qid not in answers:
                fail(f"{where}: question {qid} has no annotation in {args.annotations}")
            entry["answer"] = answers[qid]
        entries.append({**entry, "question_id": qid, "dataset": "vqa"})
    write(args.out, entries)


def answer_list(args):
    counts = Counter()
    for path in args.annotations:
        for i, a in enumerate(load(path, "annotations")):
            counts[field(a, "multiple_choice_answer", f"{path}: annotations[{i}]")] += 1
    ranked = sorted(counts, key=lambda answer: (-counts[answer], answer))
    write(args.out, ranked[:args.top])


def vg(args):
    keep = set(load(args.answer_list)) if args.answer_list else None
    entries, dropped = [], 0
    for i, image in enumerate(load(args.qa)):
        where = f"{args.qa}: [{i}]"
        path = args.pattern.format(id=field(image, "id", where))
        for qa in field(image, "qas", where):
            answer = field(qa, "answer", where).strip().lower().rstrip(".").strip()
            if keep is not None and answer not in keep:
                dropped += 1
                continue
            entries.append({"image": path, "question": field(qa, "question", where),
                            "answer": answer, "question_id": field(qa, "qa_id", where),
                            "dataset": "vg"})
    write(args.out, entries)
    if keep is not None:
        print(f"{dropped} questions left out (answer not in {args.answer_list})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("vqa", help="VQA v2 questions (+ annotations) -> vqa_<split>.json")
    p.add_argument("--questions", type=Path, required=True)
    p.add_argument("--annotations", type=Path, help="leave out for the test splits")
    p.add_argument("--ext", default=".jpg", help="image file extension (default: %(default)s)")
    p.set_defaults(run=vqa)
    p = sub.add_parser("answers", help="annotations -> answer_list.json")
    p.add_argument("--annotations", type=Path, nargs="+", required=True)
    p.add_argument("--top", type=int, default=3128, help="answers kept (default: %(default)s)")
    p.set_defaults(run=answer_list)
    p = sub.add_parser("vg", help="Visual Genome question_answers.json -> vg_qa.json")
    p.add_argument("--qa", type=Path, required=True)
    p.add_argument("--pattern", default="VG_100K/{id}.jpg",
                   help="image path from the image {id} (default: %(default)s)")
    p.add_argument("--answer-list", type=Path,
                   help="keep only questions whose answer is in this answer_list.json")
    p.set_defaults(run=vg)
    for p in sub.choices.values():
        p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
