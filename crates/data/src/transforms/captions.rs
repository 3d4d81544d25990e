//! Caption cleaning of the ALBEF reference (`dataset/utils.py`).

/// ALBEF's `pre_caption`: lower-case, delete `,.'!?"()*#:;~`, turn `-` and
/// `/` into spaces and `<person>` into `person`, collapse runs of 2+
/// whitespace, trim, and keep at most `max_words` words.
pub fn pre_caption(caption: &str, max_words: usize) -> String {
    let lower = caption.to_lowercase();
    let deleted: String = lower
        .chars()
        .filter(|c| !",.'!?\"()*#:;~".contains(*c))
        .collect();
    let replaced = deleted
        .replace(['-', '/'], " ")
        .replace("<person>", "person");
    let mut collapsed = String::with_capacity(replaced.len());
    let mut run = String::new();
    for c in replaced.chars() {
        if c.is_whitespace() {
            run.push(c);
        } else {
            collapsed.push_str(if run.chars().count() >= 2 { " " } else { &run });
            run.clear();
            collapsed.push(c);
        }
    }
    collapsed.push_str(if run.chars().count() >= 2 { " " } else { &run });
    let trimmed = collapsed.trim_end_matches('\n').trim_matches(' ');
    let words: Vec<&str> = trimmed.split(' ').collect();
    if words.len() > max_words {
        words[..max_words].join(" ")
    } else {
        trimmed.to_owned()
    }
}
