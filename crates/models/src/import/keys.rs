//! Key templates: how a checkpoint's parameter names map onto the model's
//! field paths, in both directions.

/// One renaming between a checkpoint key prefix and a model field path.
///
/// Both sides are dot-separated templates matched segment by segment; `{n}`
/// matches a number and carries it over. A key matches when the template is a
/// prefix of it; the rest of the key is kept.
///
/// Rules are tried in order and the first match wins, in both directions, so
/// a more specific rule must come before a more general one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRule {
    /// Template in the checkpoint's naming.
    pub checkpoint: String,
    /// Template in our field naming.
    pub model: String,
}

/// Shorthand for a [`KeyRule`].
pub fn rule(checkpoint: &str, model: &str) -> KeyRule {
    KeyRule {
        checkpoint: checkpoint.to_owned(),
        model: model.to_owned(),
    }
}

/// The same rules under a prefix on each side (`"bert."` → `"text_encoder.bert."`).
pub fn prefixed(checkpoint_prefix: &str, model_prefix: &str, rules: &[KeyRule]) -> Vec<KeyRule> {
    let mut out: Vec<KeyRule> = rules
        .iter()
        .map(|r| KeyRule {
            checkpoint: format!("{checkpoint_prefix}{}", r.checkpoint),
            model: format!("{model_prefix}{}", r.model),
        })
        .collect();
    // Keys under the prefix that no rule renames still need the prefix swap.
    let (from, to) = (
        checkpoint_prefix.trim_end_matches('.'),
        model_prefix.trim_end_matches('.'),
    );
    if from != to && !from.is_empty() && !to.is_empty() {
        out.push(rule(from, to));
    }
    out
}

/// Rewrites `key` by the first rule whose `from` side matches; unchanged when
/// none does.
fn rewrite(rules: &[KeyRule], key: &str, to_model: bool) -> String {
    for rule in rules {
        let (from, to) = if to_model {
            (&rule.checkpoint, &rule.model)
        } else {
            (&rule.model, &rule.checkpoint)
        };
        if let Some(rewritten) = rewrite_one(from, to, key) {
            return rewritten;
        }
    }
    key.to_owned()
}

fn rewrite_one(from: &str, to: &str, key: &str) -> Option<String> {
    let template: Vec<&str> = from.split('.').collect();
    let segments: Vec<&str> = key.split('.').collect();
    if segments.len() < template.len() {
        return None;
    }
    let mut numbers = Vec::new();
    for (t, s) in template.iter().zip(&segments) {
        if *t == "{n}" {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            numbers.push(*s);
        } else if t != s {
            return None;
        }
    }
    let mut numbers = numbers.into_iter();
    let mut out: Vec<&str> = to
        .split('.')
        .map(|t| {
            if t == "{n}" {
                numbers.next().expect("same placeholders")
            } else {
                t
            }
        })
        .collect();
    out.extend(&segments[template.len()..]);
    Some(out.join("."))
}

/// Renames a checkpoint key to our field path.
pub fn to_model_key(rules: &[KeyRule], key: &str) -> String {
    rewrite(rules, key, true)
}

/// Renames one of our field paths to the checkpoint key it comes from.
pub fn to_checkpoint_key(rules: &[KeyRule], key: &str) -> String {
    rewrite(rules, key, false)
}
