//! Parallel text for AltCLIP's teacher learning (stage 1): English
//! sentences paired with their translations, from which the student text
//! encoder learns to reproduce the CLIP teacher's English embedding.
//!
//! Two sources:
//!
//! * **TSV files**, one `source<TAB>target` pair a line
//!   ([`read_parallel_tsv`]);
//! * **GNU gettext catalogs** (`.mo`), the compiled translations every
//!   Linux system ships under [`SYSTEM_LOCALE_DIR`]: `msgid` is the English
//!   user-interface string, `msgstr` its translation ([`read_mo`],
//!   [`gettext_pairs`]). Most entries are menu labels, format strings and
//!   identifiers, so [`clean_gettext_pair`] keeps only sentence-like pairs.
//!
//! # The `.mo` format
//!
//! As described in the GNU gettext manual, section "The Format of GNU MO
//! Files" (<https://www.gnu.org/software/gettext/manual/html_node/MO-Files.html>):
//!
//! ```text
//! offset 0   magic number 0x950412de, in the file's byte order
//!        4   file format revision (major revision 0 or 1)
//!        8   N, the number of strings
//!       12   O, offset of the table of original strings
//!       16   T, offset of the table of translated strings
//!       ...
//! O          N × (length, offset) of the original strings
//! T          N × (length, offset) of the translated strings
//! ```
//!
//! All numbers are `u32` in the byte order given by the magic number
//! (`de 12 04 95` on disk is little-endian, `95 04 12 de` big-endian).
//! Strings are NUL-terminated; the length excludes the NUL. The entry with
//! an empty `msgid` is the catalog header. A plural entry's `msgid` is
//! `singular\0plural` and its `msgstr` the NUL-separated forms; an entry
//! with a context has `msgid` = `context\x04msgid`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::DataError;
use crate::manifest::Location;

/// Where Debian-like systems install gettext catalogs:
/// `{SYSTEM_LOCALE_DIR}/{locale}/LC_MESSAGES/{domain}.mo`.
pub const SYSTEM_LOCALE_DIR: &str = "/usr/share/locale";

/// An English sentence and its translation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParallelPair {
    /// The English sentence.
    pub source: String,
    /// Its translation into the other language.
    pub target: String,
}

/// Reads a TSV file of `source<TAB>target` lines.
///
/// Empty (or all-whitespace) lines are skipped; both sides are trimmed. A
/// line with no tab, more than one tab, or an empty side is an error
/// naming the file and its 1-based line.
pub fn read_parallel_tsv(path: &Path) -> Result<Vec<ParallelPair>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    // A byte-order mark (editors on Windows write one) is not text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let error = |message: String| DataError::Manifest {
            location: Location {
                file: path.to_owned(),
                line: i + 1,
            },
            message,
        };
        let fields: Vec<&str> = line.split('\t').collect();
        let [source, target] = fields[..] else {
            return Err(error(format!(
                "expected `source<TAB>target`, found {} tab(s)",
                fields.len() - 1
            )));
        };
        let (source, target) = (source.trim(), target.trim());
        if source.is_empty() || target.is_empty() {
            let side = if source.is_empty() {
                "source"
            } else {
                "target"
            };
            return Err(error(format!("empty {side}")));
        }
        pairs.push(ParallelPair {
            source: source.to_owned(),
            target: target.to_owned(),
        });
    }
    Ok(pairs)
}

/// Reads a GNU gettext binary catalog (`.mo`) into `(msgid, msgstr)` pairs,
/// in catalog order (sorted by `msgid`).
///
/// The header entry (empty `msgid`) is skipped. Plural entries keep only
/// their singular forms (the first part of `msgid` and of `msgstr`);
/// entries with a `msgctxt` lose the context prefix. Untranslated entries
/// (empty `msgstr`) are kept. A truncated file, an offset or length out of
/// bounds, an unknown magic number or revision, or a string that is not
/// UTF-8 is an error naming the file.
pub fn read_mo(path: &Path) -> Result<Vec<(String, String)>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_mo(&bytes).map_err(|message| DataError::Format {
        path: path.to_owned(),
        message: format!("corrupt gettext catalog: {message}"),
    })
}

/// The `u32` reader of one catalog, in its byte order.
struct MoReader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl MoReader<'_> {
    fn u32_at(&self, offset: usize) -> Result<u32, String> {
        let word = offset
            .checked_add(4)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or_else(|| {
                format!(
                    "offset {offset} is past the end of the file ({} bytes)",
                    self.bytes.len()
                )
            })?;
        let word = [word[0], word[1], word[2], word[3]];
        Ok(if self.big_endian {
            u32::from_be_bytes(word)
        } else {
            u32::from_le_bytes(word)
        })
    }

    /// Entry `index` of the (length, offset) table at `table`.
    fn string(&self, table: usize, index: usize, what: &str) -> Result<&str, String> {
        let descriptor = table + 8 * index;
        let len = self.u32_at(descriptor)? as usize;
        let offset = self.u32_at(descriptor + 4)? as usize;
        let bytes = offset
            .checked_add(len)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or_else(|| {
                format!(
                    "{what} {index} (offset {offset}, length {len}) is out of bounds ({} bytes)",
                    self.bytes.len()
                )
            })?;
        std::str::from_utf8(bytes).map_err(|e| format!("{what} {index} is not valid UTF-8 ({e})"))
    }
}

const MO_MAGIC: u32 = 0x9504_12de;

fn parse_mo(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    if bytes.len() < 20 {
        return Err(format!(
            "{} bytes is too short for the 20-byte header",
            bytes.len()
        ));
    }
    let le = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let big_endian = match le {
        MO_MAGIC => false,
        m if m == MO_MAGIC.swap_bytes() => true,
        m => return Err(format!("bad magic number {m:#010x}")),
    };
    let reader = MoReader { bytes, big_endian };
    let revision = reader.u32_at(4)?;
    if revision >> 16 > 1 {
        return Err(format!("unsupported format revision {revision:#x}"));
    }
    let n = reader.u32_at(8)? as usize;
    let originals = reader.u32_at(12)? as usize;
    let translations = reader.u32_at(16)? as usize;
    // Check both tables fit before allocating for `n` entries.
    for (table, name) in [(originals, "original"), (translations, "translation")] {
        let fits = n
            .checked_mul(8)
            .and_then(|size| table.checked_add(size))
            .is_some_and(|end| end <= bytes.len());
        if !fits {
            return Err(format!(
                "the {name} table ({n} entries at offset {table}) does not fit in {} bytes",
                bytes.len()
            ));
        }
    }
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        let msgid = reader.string(originals, i, "msgid")?;
        let msgstr = reader.string(translations, i, "msgstr")?;
        // `context\x04msgid`: drop the context.
        let msgid = msgid.split_once('\x04').map_or(msgid, |(_, id)| id);
        // `singular\0plural`: keep the singular forms.
        let msgid = msgid.split('\0').next().unwrap_or_default();
        let msgstr = msgstr.split('\0').next().unwrap_or_default();
        if msgid.is_empty() {
            continue; // the header
        }
        pairs.push((msgid.to_owned(), msgstr.to_owned()));
    }
    Ok(pairs)
}

/// Turns a gettext `(msgid, msgstr)` pair into a natural-language sentence
/// pair (English source, Chinese target), or `None` when it is not one.
///
/// Cleaning, on both sides:
///
/// * the CJK-style accelerator suffix `(_F)` / `(&F)` (also with full-width
///   parentheses) is removed wherever it stands, usually at the end or
///   before an ellipsis (`打开(_O)…`);
/// * the GTK mnemonic, an `_` before a letter or digit, is removed: the
///   first one at the start of a word (`_Save as`), or mid-word (`Sa_ve`)
///   when the translation's accelerator suffix names that letter (`(_V)`);
///   any other underscore is kept (and `file_name` is then rejected);
/// * every Qt/KDE mnemonic (`&` before a letter or digit, `&Open`) is
///   removed, and `&&` becomes `&`;
/// * the text is trimmed, runs of whitespace (newlines included) become
///   one space, and a trailing colon (`Options:`, `选项：`) is dropped.
///
/// The pair is rejected when:
///
/// * either side is empty;
/// * the `msgid` has fewer than 2 or more than 40 words;
/// * the `msgstr` has no CJK unified ideograph (U+4E00..=U+9FFF), i.e. it
///   was left untranslated or is in another script;
/// * either side has a placeholder: printf `%s`, `%d`, `%1$s`, `%(name)s`,
///   positional `%1`, braces `{0}` / `{}`, shell `${…}` / `$VAR`, or
///   `@name@`;
/// * either side has markup (`<` or `>`; translations write metavariables
///   as `<文件>`), the `msgid` has an HTML entity (`&amp;`), a URL
///   (`://`, `www.`), a backslash escape, an e-mail address, a leftover
///   underscore (an identifier such as `file_name`), a command-line option
///   (`--help`, ` -x`), a path (`/usr`, `~/`), a `key=value` setting, a
///   `#` (`# comment`, `PKCS #11`), a dotted name (`.gitmodules`,
///   `index.theme`, `push.default`; `e.g.` and `i.e.` are fine), a word
///   mixing letters and digits (`IPv6`, `utf8`, `v850e3v5`) or a
///   CamelCase word (`GtkWindow`, `OpenSSL`, `GCredentials`), or two or
///   more all-capital words (SQL, constants and metavariables:
///   `cannot use DISTINCT with WITHIN GROUP`; one acronym is fine);
/// * the `msgid` does not start with a letter (`[N] - use …`, `4 bytes`,
///   `# …`, `(signature …`);
/// * the `msgid` is a title-case label or proper name: every word starts
///   with a capital (`Default Page Setup`, `Western Australia`);
/// * the `msgid` has a parenthesised comma list, the style of keyboard
///   layout and variant names (`English (UK, Macintosh, intl.)`);
/// * the `msgid` is mostly not letters: fewer than 75 % of its non-space
///   characters are alphabetic, or it has no lowercase letter (an acronym
///   or a constant);
/// * the `msgstr` equals the `msgid`.
pub fn clean_gettext_pair(msgid: &str, msgstr: &str) -> Option<ParallelPair> {
    if has_entity(msgid) {
        return None;
    }
    let hint = accelerator_suffix(msgstr);
    let source = clean_text(msgid, hint);
    let target = clean_text(msgstr, None);
    let source = source.trim_end_matches(':').trim_end().to_owned();
    let target = target.trim_end_matches([':', '：']).trim_end().to_owned();
    if source.is_empty() || target.is_empty() || source == target {
        return None;
    }
    let words = source.split_whitespace().count();
    if !(2..=40).contains(&words) {
        return None;
    }
    if !target.chars().any(is_cjk_ideograph) {
        return None;
    }
    if has_placeholder(&source)
        || has_placeholder(&target)
        || looks_technical(&source)
        || target.contains(['<', '>'])
    {
        return None;
    }
    let visible: Vec<char> = source.chars().filter(|c| !c.is_whitespace()).collect();
    let letters = visible.iter().filter(|c| c.is_alphabetic()).count();
    if letters * 4 < visible.len() * 3 || !source.chars().any(char::is_lowercase) {
        return None;
    }
    Some(ParallelPair { source, target })
}

fn is_cjk_ideograph(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// `&name;` or `&#…;`: escaped markup.
fn has_entity(s: &str) -> bool {
    s.match_indices('&').any(|(i, _)| {
        let rest = &s[i + 1..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .unwrap_or(rest.len());
        name_len > 0 && rest[name_len..].starts_with(';')
    })
}

/// The letter of a `(_F)`-style accelerator suffix at `chars[i..]`.
fn accelerator_at(chars: &[char], i: usize) -> Option<char> {
    match chars.get(i..i + 4)? {
        ['(' | '（', '_' | '&', c, ')' | '）'] if c.is_ascii_alphanumeric() => {
            Some(c.to_ascii_uppercase())
        }
        _ => None,
    }
}

/// The (upper-case) letter of the first `(_F)`-style accelerator in `s`.
fn accelerator_suffix(s: &str) -> Option<char> {
    let chars: Vec<char> = s.chars().collect();
    (0..chars.len()).find_map(|i| accelerator_at(&chars, i))
}

/// Removes accelerators, trims and collapses whitespace; `hint` is the
/// mnemonic letter the translation names, if any.
fn clean_text(s: &str, hint: Option<char>) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut gtk_mnemonic_seen = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if accelerator_at(&chars, i).is_some() {
            i += 4;
            continue;
        }
        let before_alnum = next.is_some_and(char::is_alphanumeric);
        if c == '&' && next == Some('&') {
            // `&&` is a literal ampersand in Qt.
            out.push('&');
            i += 2;
            continue;
        }
        if c == '&' && before_alnum {
            i += 1;
            continue;
        }
        let word_start = i == 0 || !chars[i - 1].is_alphanumeric();
        let hinted = next.map(|n| n.to_ascii_uppercase()) == hint && hint.is_some();
        if c == '_' && before_alnum && !gtk_mnemonic_seen && (word_start || hinted) {
            gtk_mnemonic_seen = true;
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// printf, Qt, Python, shell and `@name@` placeholders.
fn has_placeholder(s: &str) -> bool {
    if s.contains(['{', '}', '@']) {
        return true;
    }
    let chars: Vec<char> = s.chars().collect();
    chars.windows(2).any(|w| match w {
        // `%s`, `%1`, `%(name)s`, `%-10s`, `%.2f`, `%'d`, `%%`, `%*d`, `%#x`, `%+d`.
        ['%', c] => c.is_ascii_alphanumeric() || "(.-*'%#+<".contains(*c),
        ['$', c] => c.is_ascii_alphanumeric() || *c == '{' || *c == '_',
        _ => false,
    })
}

/// Markup, URLs, escapes, identifiers, options, paths and settings.
fn looks_technical(s: &str) -> bool {
    if s.contains(['<', '>', '\\', '_', '=', '|', '#'])
        || s.contains("://")
        || s.contains("www.")
        || s.contains("--")
    {
        return true;
    }
    if !s.starts_with(char::is_alphabetic) || is_title_case(s) || has_paren_list(s) {
        return true;
    }
    let dotted = s.replace("e.g.", "").replace("i.e.", "");
    let chars: Vec<char> = dotted.chars().collect();
    let has_dotted_name = chars.windows(3).any(|w| match w {
        // `index.theme`, `push.default`, `.gitmodules` (not `1.5`, `end. Next`).
        [a, '.', b] => {
            (a.is_alphanumeric() || a.is_whitespace())
                && b.is_alphanumeric()
                && (a.is_alphabetic() || b.is_alphabetic())
        }
        _ => false,
    });
    if has_dotted_name {
        return true;
    }
    // `ON CONFLICT DO UPDATE`, `TRUE if … PDF`: code words, not acronyms.
    let shouting = s
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_uppercase()))
        .count();
    if shouting >= 2 {
        return true;
    }
    s.split_whitespace().any(|word| {
        let bare = word.trim_start_matches(['(', '[', '"', '\'', '`']);
        // ` -x`: an option; `/usr`, `~/`: a path (`and/or` is fine).
        (bare.starts_with('-') && bare.len() > 1)
            || bare.starts_with('/')
            || bare.starts_with("~/")
            || bare.starts_with("./")
            || word
                .split(|c: char| !c.is_alphanumeric())
                .any(|run| is_mixed_alnum(run) || is_camel_case(run))
    })
}

/// `IPv6`, `utf8`, `v850e3v5`: letters and digits in one run.
fn is_mixed_alnum(run: &str) -> bool {
    run.contains(char::is_alphabetic) && run.contains(|c: char| c.is_ascii_digit())
}

/// `GtkWindow`, `OpenSSL`, `GCredentials`: an identifier or brand.
fn is_camel_case(run: &str) -> bool {
    let chars: Vec<char> = run.chars().collect();
    chars
        .windows(2)
        .any(|w| w[0].is_lowercase() && w[1].is_uppercase())
        || chars
            .windows(3)
            .any(|w| w[0].is_uppercase() && w[1].is_uppercase() && w[2].is_lowercase())
}

/// Every word with a letter starts with a capital.
fn is_title_case(s: &str) -> bool {
    s.split_whitespace()
        .filter_map(|word| word.chars().find(|c| c.is_alphabetic()))
        .all(char::is_uppercase)
}

/// `(UK, Macintosh, intl.)`.
fn has_paren_list(s: &str) -> bool {
    s.split('(')
        .skip(1)
        .any(|inside| inside.split(')').next().is_some_and(|i| i.contains(',')))
}

/// Sentence pairs cleaned from a locale's gettext catalogs.
#[derive(Debug, Clone, Default)]
pub struct GettextCorpus {
    /// The kept pairs: cleaned, de-duplicated, in file-then-catalog order.
    pub pairs: Vec<ParallelPair>,
    /// Catalogs read (corrupt ones, skipped with a warning, not counted).
    pub files: usize,
    /// `(msgid, msgstr)` pairs read before cleaning (headers excluded).
    pub raw_pairs: usize,
}

/// Reads every `{locale_root}/{locale}/LC_MESSAGES/*.mo`, in file-name
/// order, and keeps the pairs [`clean_gettext_pair`] accepts.
///
/// Pairs are de-duplicated by `(source, target)` and then by `source`
/// alone, keeping the first, so each English sentence has one translation
/// (the one from the alphabetically first catalog). A missing directory is
/// an error naming it; a catalog that cannot be read or is corrupt is
/// skipped with a warning naming it.
///
/// `locale_root` is usually [`SYSTEM_LOCALE_DIR`]; `locale` e.g. `zh_CN`.
pub fn gettext_pairs(locale_root: &Path, locale: &str) -> Result<GettextCorpus, DataError> {
    let dir = locale_root.join(locale).join("LC_MESSAGES");
    if !dir.is_dir() {
        return Err(DataError::Format {
            path: dir,
            message: format!(
                "no such directory (is the `{locale}` locale's translation data installed?)"
            ),
        });
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|source| DataError::Io {
            path: dir.clone(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "mo") && p.is_file())
        .collect();
    files.sort();

    let mut corpus = GettextCorpus::default();
    let mut seen_pairs = HashSet::new();
    let mut seen_sources = HashSet::new();
    for file in &files {
        let raw = match read_mo(file) {
            Ok(raw) => raw,
            Err(e) => {
                log::warn!("skipping gettext catalog: {e}");
                continue;
            }
        };
        corpus.files += 1;
        corpus.raw_pairs += raw.len();
        for (msgid, msgstr) in &raw {
            let Some(pair) = clean_gettext_pair(msgid, msgstr) else {
                continue;
            };
            if !seen_pairs.insert((pair.source.clone(), pair.target.clone())) {
                continue;
            }
            if seen_sources.insert(pair.source.clone()) {
                corpus.pairs.push(pair);
            }
        }
    }
    Ok(corpus)
}

#[cfg(test)]
mod tests;
