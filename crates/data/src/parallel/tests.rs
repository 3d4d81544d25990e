//! Parallel text: TSV lines, `.mo` catalogs, the gettext filter.

use super::*;

/// Serialises `(msgid, msgstr)` entries (already sorted, with `\0` and
/// `\x04` as gettext writes them) into the `.mo` layout.
fn mo_bytes(entries: &[(&str, &str)], big_endian: bool) -> Vec<u8> {
    let u32_bytes = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let n = entries.len() as u32;
    let originals = 28u32;
    let translations = originals + 8 * n;
    let mut strings_at = translations + 8 * n;
    let mut tables = Vec::new();
    let mut strings = Vec::new();
    for side in 0..2 {
        for (id, str_) in entries {
            let s = if side == 0 { id } else { str_ };
            tables.extend(u32_bytes(s.len() as u32));
            tables.extend(u32_bytes(strings_at));
            strings.extend(s.as_bytes());
            strings.push(0);
            strings_at += s.len() as u32 + 1;
        }
    }
    let mut out = Vec::new();
    out.extend(u32_bytes(MO_MAGIC));
    out.extend(u32_bytes(0)); // revision
    out.extend(u32_bytes(n));
    out.extend(u32_bytes(originals));
    out.extend(u32_bytes(translations));
    out.extend(u32_bytes(0)); // hash table size
    out.extend(u32_bytes(0)); // hash table offset
    out.extend(tables);
    out.extend(strings);
    out
}

/// `bytes` as `name` in a scratch directory (removed when it drops).
fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

const ENTRIES: [(&str, &str); 4] = [
    ("", "Content-Type: text/plain; charset=UTF-8\n"),
    ("Open a file", "打开文件"),
    ("menu\x04Quit the program", "退出程序"),
    (
        "One file was deleted\0%d files were deleted",
        "删除了一个文件\0删除了 %d 个文件",
    ),
];

fn expected() -> Vec<(String, String)> {
    [
        ("Open a file", "打开文件"),
        ("Quit the program", "退出程序"),
        ("One file was deleted", "删除了一个文件"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .to_vec()
}

#[test]
fn mo_files_read_in_both_byte_orders() {
    for big_endian in [false, true] {
        let (_dir, path) = temp_file(
            &format!("ok-{big_endian}.mo"),
            &mo_bytes(&ENTRIES, big_endian),
        );
        assert_eq!(
            read_mo(&path).unwrap(),
            expected(),
            "big endian: {big_endian}"
        );
    }
}

#[test]
fn corrupt_mo_files_are_errors_naming_the_file() {
    let good = mo_bytes(&ENTRIES, false);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("short.mo", good[..12].to_vec(), "too short"),
        ("cut.mo", good[..good.len() - 10].to_vec(), "out of bounds"),
        ("tables.mo", good[..40].to_vec(), "does not fit"),
        (
            "magic.mo",
            [b"\0\0\0\0".as_slice(), &good[4..]].concat(),
            "magic",
        ),
    ];
    for (name, bytes, reason) in cases {
        let (_dir, path) = temp_file(name, &bytes);
        let err = read_mo(&path).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(reason), "{err}");
    }

    let mut bad_utf8 = mo_bytes(&[("Open a file", "打开文件")], false);
    let at = bad_utf8.len() - 3; // inside `打开文件`
    bad_utf8[at] = 0xff;
    let (_dir, path) = temp_file("utf8.mo", &bad_utf8);
    let err = read_mo(&path).unwrap_err().to_string();
    assert!(err.contains("utf8.mo") && err.contains("UTF-8"), "{err}");
}

#[test]
fn gettext_pairs_skips_corrupt_catalogs_and_deduplicates() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    let dir = root.join("zh_CN").join("LC_MESSAGES");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.mo"), mo_bytes(&ENTRIES, false)).unwrap();
    std::fs::write(dir.join("b.mo"), b"garbage").unwrap();
    let second = [
        ("Open a file", "打开一个文件"),
        ("Save the document", "保存文档"),
    ];
    std::fs::write(dir.join("c.mo"), mo_bytes(&second, true)).unwrap();

    let corpus = gettext_pairs(root, "zh_CN").unwrap();
    assert_eq!(corpus.files, 2);
    assert_eq!(corpus.raw_pairs, 5);
    let sources: Vec<&str> = corpus.pairs.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(
        sources,
        [
            "Open a file",
            "Quit the program",
            "One file was deleted",
            "Save the document"
        ]
    );
    assert_eq!(corpus.pairs[0].target, "打开文件");

    let err = gettext_pairs(root, "xx").unwrap_err().to_string();
    assert!(err.contains("xx/LC_MESSAGES"), "{err}");
}

#[test]
fn cleaning_removes_accelerators_and_whitespace() {
    let pair = |a: &str, b: &str| {
        Some(ParallelPair {
            source: a.to_owned(),
            target: b.to_owned(),
        })
    };
    assert_eq!(
        clean_gettext_pair("_Save the file…", "保存文件(_S)…"),
        pair("Save the file…", "保存文件…")
    );
    assert_eq!(
        clean_gettext_pair("Sa&ve all\n  open documents", "保存所有打开的文档（&V）"),
        pair("Save all open documents", "保存所有打开的文档")
    );
    assert_eq!(
        clean_gettext_pair("Sa_ve the file", "保存文件(_V)"),
        pair("Save the file", "保存文件")
    );
    assert_eq!(
        clean_gettext_pair(
            "Amount of physical memory (e.g. RAM):",
            "物理内存（例如 RAM）用量："
        ),
        pair(
            "Amount of physical memory (e.g. RAM)",
            "物理内存（例如 RAM）用量"
        )
    );
    assert_eq!(
        clean_gettext_pair("Salt && pepper mills", "盐和胡椒研磨器"),
        pair("Salt & pepper mills", "盐和胡椒研磨器")
    );
    assert_eq!(
        clean_gettext_pair("The operation was cancelled.", "操作已取消。"),
        pair("The operation was cancelled.", "操作已取消。")
    );
}

#[test]
fn cleaning_rejects_what_is_not_a_sentence_pair() {
    let long = vec!["word"; 41].join(" ");
    let rejected = [
        ("Open", "打开"),                                      // one word
        (long.as_str(), "很长"),                               // 41 words
        ("Open a file", "Open a file"),                        // untranslated
        ("Open a file", "Ouvrir un fichier"),                  // no CJK
        ("Cannot open %s", "无法打开 %s"),                     // printf
        ("Cannot open %1", "无法打开 %1"),                     // Qt
        ("Cannot open %(name)s now", "现在无法打开 %(name)s"), // Python
        ("Cannot open {0} now", "现在无法打开 {0}"),           // braces
        ("Cannot open ${file} now", "现在无法打开 ${file}"),   // shell
        ("Click <b>here</b> now", "现在点击<b>这里</b>"),      // markup
        (
            "See https://example.org for more",
            "详见 https://example.org",
        ), // URL
        ("Use &amp; for and", "用 &amp; 表示和"),              // entity
        ("12:00 - 13:00 UTC", "12:00 - 13:00 协调世界时"),     // mostly not letters
        ("GNU GPL", "GNU 通用公共许可证"),                     // no lowercase
        ("set file_name first", "先设置文件名"),               // identifier
        ("use --force to overwrite", "使用 --force 覆盖"),     // option
        ("", "空"),
        ("Open a file", ""),
        ("IPv6 addresses not supported", "不支持 IPv6 地址"), // letters and digits
        ("OpenSSL version is too old", "OpenSSL 版本太旧"),   // CamelCase
        ("cannot load index.theme file", "无法加载 index.theme"), // dotted name
        (
            "staging updated .gitmodules failed",
            "暂存 .gitmodules 失败",
        ),
        ("PKCS #11 user error", "PKCS #11 用户错误"), // `#`
        ("[N] - use instance of name", "[N] - 使用名称的实例"), // not a letter first
        (
            "Use DROP INDEX to remove an index.",
            "请使用 DROP INDEX 删除一个索引。",
        ),
        ("Default Page Setup", "默认页面设置"), // title case
        (
            "English (UK, Macintosh, intl.)",
            "英语（英国，Macintosh，国际）",
        ), // layout
    ];
    for (msgid, msgstr) in rejected {
        assert_eq!(
            clean_gettext_pair(msgid, msgstr),
            None,
            "{msgid:?} → {msgstr:?}"
        );
    }
}

#[test]
fn tsv_errors_name_the_line() {
    let (_dir, path) = temp_file(
        "pairs.tsv",
        "a dog\t一只狗\n\n a cat \t 一只猫 \nno tab here\n".as_bytes(),
    );
    let err = read_parallel_tsv(&path).unwrap_err().to_string();
    assert!(
        err.contains("pairs.tsv:4") && err.contains("0 tab"),
        "{err}"
    );

    let (_dir, path) = temp_file("ok.tsv", "a dog\t一只狗\n\n a cat \t 一只猫 \n".as_bytes());
    let pairs = read_parallel_tsv(&path).unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[1].source, "a cat");
    assert_eq!(pairs[1].target, "一只猫");

    let (_dir, path) = temp_file("empty.tsv", "a dog\t一只狗\na cat\t \n".as_bytes());
    let err = read_parallel_tsv(&path).unwrap_err().to_string();
    assert!(
        err.contains("empty.tsv:2") && err.contains("empty target"),
        "{err}"
    );
}

/// Reads this machine's Chinese catalogs; prints counts and a sample.
#[test]
#[ignore = "needs the system's zh_CN gettext catalogs"]
fn system_zh_cn_catalogs() {
    let corpus = gettext_pairs(Path::new(SYSTEM_LOCALE_DIR), "zh_CN").unwrap();
    eprintln!(
        "{} files, {} raw pairs, {} kept",
        corpus.files,
        corpus.raw_pairs,
        corpus.pairs.len()
    );
    use rand::seq::IndexedRandom;
    use rand::{SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(0);
    for pair in corpus.pairs.sample(&mut rng, 20) {
        eprintln!("{}\t{}", pair.source, pair.target);
    }
    assert!(corpus.pairs.len() >= 1000, "{}", corpus.pairs.len());
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.tsv");
    std::fs::write(&path, "\u{feff}a red circle\t一个红色的圆\n").unwrap();
    let pairs = read_parallel_tsv(&path).unwrap();
    assert_eq!(pairs[0].source, "a red circle");
}
