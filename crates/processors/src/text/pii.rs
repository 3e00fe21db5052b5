//! `redact_pii`: masks e-mail addresses, phone numbers and payment card numbers in text.
//!
//! Everything here is a hand-written scanner, linear in the text: no pattern engine, no
//! backtracking. E-mail addresses are found around each `@` (each byte is looked at by at most
//! the `@` on either side of it). Numbers are first cut into *digit groups* (maximal runs of
//! ASCII digits not touching a letter), groups separated by short gaps of spaces, dots, dashes
//! or parentheses form *runs*, and inside a run only windows of at most 19 digits are tested, so
//! the work per group is bounded by a constant.

use waav_plugin_api::{
    Plugin, PluginConfig, PluginError, PluginInfo, ProcessorContext, ProcessorPlugin, Stage,
    TextProcessor,
};

use crate::settings::Settings;

/// Plugin id.
pub const ID: &str = "redact_pii";
/// Longest accepted `replacement`.
pub const MAX_REPLACEMENT: usize = 64;
/// Most digits a card number has (and so the widest window tested).
const MAX_WINDOW_DIGITS: usize = 19;
/// Longest gap (in bytes) between two digit groups of one number.
const MAX_GAP: usize = 3;

/// What `redact_pii` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiKind {
    /// `local@domain.tld`.
    Email,
    /// International (`+` and 7–15 digits) and common national formats.
    Phone,
    /// 13–19 digits passing the Luhn check.
    Card,
}

impl PiiKind {
    /// The name used in `kinds` and in the default replacement (`[email]`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Card => "card",
        }
    }
}

/// The `redact_pii` plugin (alias `pii`), at the post-STT and pre-TTS stages.
///
/// Settings (all optional):
/// - `kinds`: a list of `email`, `phone`, `card` (default all three).
/// - `replacement`: the text put in place of every match (at most 64 bytes). Absent, each kind
///   gets its own tag: `[email]`, `[phone]`, `[card]`.
///
/// What counts:
/// - **e-mail**: `local@domain.tld`, the local part of letters, digits and `._%+-`, the domain
///   of dot-separated labels of letters, digits and `-`, its last label 2 or more letters.
///   Spoken forms (`bob at example dot com`) are not recognised.
/// - **card**: 13–19 digits, in one group or groups separated by spaces or dashes (`4111 1111
///   1111 1111`, or digit by digit as transcripts spell them), passing the Luhn check.
/// - **phone**: `+` and 7–15 digits in any grouping (`+44 20 7946 0958`); North American
///   numbers of 10 digits as `(555) 234-5678`, `555 234 5678`, `555.234.5678` or `5552345678`
///   (area code not starting with 0 or 1), with a leading `1` too (`1-555-234-5678`); trunk-prefix
///   national numbers of 9–11 digits starting with `0`, in one group or groups of 2 or more
///   (`020 7946 0958`, `07700 900123`); local 7-digit `234-5678` / `234.5678`; and 10–15 digits
///   spoken one by one (`5 5 5 2 3 4 5 6 7 8`).
///
/// Groups are separated by gaps of at most 3 of ` .-()`; a group touching a letter (`5th`,
/// `A1234`) is never part of a number. Everything else is left alone: counts, years, times,
/// prices, decimals, dates, order numbers that fail the Luhn check, shorter digit runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedactPiiPlugin;

impl Plugin for RedactPiiPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Redact PII")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["pii"])
            .description("Masks e-mail addresses, phone numbers and payment card numbers in text")
    }
}

impl ProcessorPlugin for RedactPiiPlugin {
    fn stages(&self) -> &'static [Stage] {
        &[Stage::PostStt, Stage::PreTts]
    }

    fn create_text(
        &self,
        _ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn TextProcessor>, PluginError> {
        Ok(Box::new(Redactor::from_config(config)?))
    }
}

/// One session's redactor.
#[derive(Debug, Clone)]
pub struct Redactor {
    email: Option<String>,
    phone: Option<String>,
    card: Option<String>,
}

impl Redactor {
    /// Reads and checks the settings.
    pub fn from_config(config: &PluginConfig) -> Result<Self, PluginError> {
        Settings::new(config, &["kinds", "replacement"])?;
        let bad = |msg: String| PluginError::Config(format!("{}.{msg}", config.path()));
        let replacement = config.string("replacement")?;
        if let Some(r) = &replacement {
            if r.len() > MAX_REPLACEMENT {
                return Err(bad(format!(
                    "replacement: {} bytes; at most {MAX_REPLACEMENT}",
                    r.len()
                )));
            }
        }
        let mut kinds = Vec::new();
        match config.strings("kinds")? {
            None => kinds.extend([PiiKind::Email, PiiKind::Phone, PiiKind::Card]),
            Some(list) => {
                for k in list {
                    let kind = [PiiKind::Email, PiiKind::Phone, PiiKind::Card]
                        .into_iter()
                        .find(|c| c.as_str().eq_ignore_ascii_case(&k))
                        .ok_or_else(|| {
                            bad(format!("kinds: {k:?} is not one of email, phone, card"))
                        })?;
                    kinds.push(kind);
                }
            }
        }
        Ok(Self::new(&kinds, replacement.as_deref()))
    }

    /// A redactor for `kinds`, each replaced by `replacement` or, when `None`, by its tag.
    pub fn new(kinds: &[PiiKind], replacement: Option<&str>) -> Self {
        let with = |k: PiiKind| {
            kinds.contains(&k).then(|| {
                replacement
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("[{}]", k.as_str()))
            })
        };
        Self {
            email: with(PiiKind::Email),
            phone: with(PiiKind::Phone),
            card: with(PiiKind::Card),
        }
    }

    /// `text` with every match replaced; `None` when nothing matched.
    pub fn redact(&self, text: &str) -> Option<String> {
        let after_email = self.email.as_deref().and_then(|r| redact_emails(text, r));
        let current = after_email.as_deref().unwrap_or(text);
        let after_numbers = if self.phone.is_some() || self.card.is_some() {
            redact_numbers(current, self.phone.as_deref(), self.card.as_deref())
        } else {
            None
        };
        after_numbers.or(after_email)
    }
}

impl TextProcessor for Redactor {
    fn process(&mut self, text: &mut String) -> Result<(), PluginError> {
        if let Some(out) = self.redact(text) {
            *text = out;
        }
        Ok(())
    }
}

/// ASCII bytes of a local part, and every byte of a non-ASCII character (checked afterwards).
fn is_local_byte(b: u8) -> bool {
    b >= 0x80 || b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_local_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

/// ASCII bytes of a domain, and every byte of a non-ASCII character (checked afterwards).
fn is_domain_byte(b: u8) -> bool {
    b >= 0x80 || b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// Replaces every `local@domain.tld` in `text`; `None` when there is none.
fn redact_emails(text: &str, with: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    for at in memchr_all(bytes, b'@') {
        if at < copied {
            continue;
        }
        // The local part: back from the `@` (not past what was already replaced). The scan
        // stops after an ASCII byte, so `start` is a character boundary.
        let mut start = at;
        while start > copied && is_local_byte(bytes[start - 1]) {
            start -= 1;
        }
        // Only letters, digits and `._%+-`: start after the last other character (`«`, `—`).
        if let Some((i, c)) = text[start..at]
            .char_indices()
            .rev()
            .find(|&(_, c)| !is_local_char(c))
        {
            start += i + c.len_utf8();
        }
        while start < at && bytes[start] == b'.' {
            start += 1; // a sentence's full stop is not part of the address
        }
        if start == at {
            continue;
        }
        // The domain: forward from the `@` up to an ASCII byte that cannot be in it.
        let mut end = at + 1;
        while end < bytes.len() && is_domain_byte(bytes[end]) {
            end += 1;
        }
        // Only letters, digits, dots and dashes: stop at the first other character.
        if let Some((i, _)) = text[at + 1..end]
            .char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '.' || c == '-'))
        {
            end = at + 1 + i;
        }
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if !valid_domain(&text[at + 1..end]) {
            continue;
        }
        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
        o.push_str(&text[copied..start]);
        o.push_str(with);
        copied = end;
    }
    let mut o = out?;
    o.push_str(&text[copied..]);
    Some(o)
}

/// Dot-separated non-empty labels, at least two, the last of 2+ letters.
fn valid_domain(domain: &str) -> bool {
    let mut labels = 0;
    let mut last = "";
    for label in domain.split('.') {
        if label.is_empty() || label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.chars().count() >= 2 && last.chars().all(char::is_alphabetic)
}

/// Positions of `needle` in `hay`.
fn memchr_all(hay: &[u8], needle: u8) -> impl Iterator<Item = usize> + '_ {
    hay.iter()
        .enumerate()
        .filter_map(move |(i, &b)| (b == needle).then_some(i))
}

/// A maximal run of ASCII digits, not touching a letter on either side.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

impl Group {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// What separates a group from the previous one of its run.
#[derive(Debug, Clone, Copy, Default)]
struct Gap {
    /// Only spaces and dashes (a card may be grouped so).
    card_ok: bool,
    /// Has a dash or a dot (a 7-digit local number needs one).
    punct: bool,
}

fn is_gap_byte(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// Digit groups of `text`, each with whether it continues the previous group's run (and the
/// gap between them).
fn groups(text: &str) -> Vec<(Group, Option<Gap>)> {
    let bytes = text.as_bytes();
    let mut out: Vec<(Group, Option<Gap>)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let end = i;
        let touches_letter = text[..start]
            .chars()
            .next_back()
            .is_some_and(char::is_alphabetic)
            || text[end..].chars().next().is_some_and(char::is_alphabetic);
        if touches_letter {
            continue;
        }
        // Continues the previous group's run when only a short gap lies between them.
        let gap = out.last().and_then(|(prev, _)| {
            let between = &bytes[prev.end..start];
            (!between.is_empty()
                && between.len() <= MAX_GAP
                && between.iter().copied().all(is_gap_byte))
            .then(|| Gap {
                card_ok: between.iter().all(|&b| b == b' ' || b == b'-'),
                punct: between.iter().any(|&b| b == b'-' || b == b'.'),
            })
        });
        out.push((Group { start, end }, gap));
    }
    out
}

/// The Luhn check over ASCII digits.
fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A window of consecutive groups of one run, as tested.
struct Window<'a> {
    digits: &'a [u8],
    lens: &'a [usize],
    /// The gaps inside the window (one fewer than the groups).
    gaps: &'a [Gap],
    /// A `+` right before the first group.
    plus: bool,
}

impl Window<'_> {
    fn is_card(&self) -> bool {
        (13..=MAX_WINDOW_DIGITS).contains(&self.digits.len())
            && !self.plus
            && self.gaps.iter().all(|g| g.card_ok)
            && luhn(self.digits)
    }

    fn is_phone(&self) -> bool {
        let d = self.digits.len();
        let lens = self.lens;
        let first = self.digits[0];
        if self.plus {
            return (7..=15).contains(&d);
        }
        let nanp = |area: u8| (b'2'..=b'9').contains(&area);
        match d {
            10 if nanp(first) && (lens == [10] || lens == [3, 3, 4]) => return true,
            11 if first == b'1' && nanp(self.digits[1]) && matches!(lens, [11] | [1, 3, 3, 4]) => {
                return true
            }
            7 if lens == [3, 4] && self.gaps[0].punct && nanp(first) => return true,
            _ => {}
        }
        if first == b'0'
            && (9..=11).contains(&d)
            && (lens.len() == 1 || lens.iter().all(|&l| l >= 2))
        {
            return true;
        }
        (10..=15).contains(&d) && lens.iter().all(|&l| l == 1)
    }
}

/// Replaces phone and card numbers (each kind when its replacement is given); `None` when
/// nothing matched.
fn redact_numbers(text: &str, phone: Option<&str>, card: Option<&str>) -> Option<String> {
    let bytes = text.as_bytes();
    let all = groups(text);
    let mut spans: Vec<(usize, usize, &str)> = Vec::new();
    // Scratch reused for every window: the digits, group lengths and gaps.
    let mut digits: Vec<u8> = Vec::with_capacity(MAX_WINDOW_DIGITS);
    let mut lens: Vec<usize> = Vec::with_capacity(MAX_WINDOW_DIGITS);
    let mut gaps: Vec<Gap> = Vec::with_capacity(MAX_WINDOW_DIGITS);
    let mut run_start = 0;
    while run_start < all.len() {
        let mut run_end = run_start + 1;
        while run_end < all.len() && all[run_end].1.is_some() {
            run_end += 1;
        }
        let run = &all[run_start..run_end];
        let mut i = 0;
        while i < run.len() {
            // The widest window from group i holding at most 19 digits.
            let mut widest = i;
            let mut count = run[i].0.len();
            while widest + 1 < run.len() && count + run[widest + 1].0.len() <= MAX_WINDOW_DIGITS {
                widest += 1;
                count += run[widest].0.len();
            }
            let start = run[i].0.start;
            let plus = start > 0 && bytes[start - 1] == b'+'
                // `+` counts only as a prefix, not after a digit (`3+4`).
                && (start < 2 || !bytes[start - 2].is_ascii_alphanumeric());
            let mut hit = None;
            if run[i].0.len() <= MAX_WINDOW_DIGITS {
                for j in (i..=widest).rev() {
                    digits.clear();
                    lens.clear();
                    gaps.clear();
                    for (k, (g, gap)) in run[i..=j].iter().enumerate() {
                        digits.extend_from_slice(&bytes[g.start..g.end]);
                        lens.push(g.len());
                        if k > 0 {
                            gaps.push(gap.unwrap_or_default());
                        }
                    }
                    let w = Window {
                        digits: &digits,
                        lens: &lens,
                        gaps: &gaps,
                        plus,
                    };
                    let found = match (card, phone) {
                        (Some(c), _) if w.is_card() => Some(c),
                        (_, Some(p)) if w.is_phone() => Some(p),
                        _ => None,
                    };
                    if let Some(with) = found {
                        hit = Some((j, with));
                        break;
                    }
                }
            }
            match hit {
                Some((j, with)) => {
                    let mut s = start;
                    // A leading `+` or `(` belongs to the number.
                    while s > 0 && matches!(bytes[s - 1], b'+' | b'(') && start - s < 2 {
                        s -= 1;
                    }
                    spans.push((s, run[j].0.end, with));
                    i = j + 1;
                }
                None => i += 1,
            }
        }
        run_start = run_end;
    }
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (s, e, with) in spans {
        out.push_str(&text[copied..s]);
        out.push_str(with);
        copied = e;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Redactor {
        Redactor::new(&[PiiKind::Email, PiiKind::Phone, PiiKind::Card], None)
    }

    fn redact(text: &str) -> String {
        all().redact(text).unwrap_or_else(|| text.to_owned())
    }

    #[test]
    fn luhn_known_values() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"79927398710"));
    }

    #[test]
    fn emails_are_masked_with_their_punctuation_left() {
        assert_eq!(
            redact("mail bob.smith+tag@mail.example.co.uk."),
            "mail [email]."
        );
        assert_eq!(redact("a@b.io and c_d@e-f.com"), "[email] and [email]");
        // Not addresses: no dot in the domain, a one-letter or numeric TLD, nothing before `@`.
        for text in [
            "me@localhost",
            "x@y.c",
            "x@1.23",
            "@handle",
            "a@.com",
            "a@b..com",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn cards_pass_luhn_in_any_common_grouping() {
        assert_eq!(redact("card 4111111111111111 ok"), "card [card] ok");
        assert_eq!(redact("card 4111 1111 1111 1111."), "card [card].");
        assert_eq!(redact("card 4111-1111-1111-1111"), "card [card]");
        assert_eq!(redact("amex 3782 822463 10005"), "amex [card]");
        // Spelled digit by digit, as transcripts do.
        assert_eq!(
            redact("it is 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 thanks"),
            "it is [card] thanks"
        );
    }

    #[test]
    fn phones_international_and_national() {
        assert_eq!(redact("call +44 20 7946 0958 now"), "call [phone] now");
        assert_eq!(redact("call +1 (555) 234-5678"), "call [phone]");
        assert_eq!(redact("call (555) 234-5678."), "call [phone].");
        assert_eq!(redact("call 555-234-5678"), "call [phone]");
        assert_eq!(redact("call 555.234.5678"), "call [phone]");
        assert_eq!(redact("call 555 234 5678"), "call [phone]");
        assert_eq!(redact("call 1-555-234-5678"), "call [phone]");
        assert_eq!(redact("ring 020 7946 0958"), "ring [phone]");
        assert_eq!(redact("ring 07700 900123"), "ring [phone]");
        assert_eq!(redact("ring 234-5678"), "ring [phone]");
        assert_eq!(
            redact("my number is 5 5 5 2 3 4 5 6 7 8"),
            "my number is [phone]"
        );
        // A number in front of the phone stays.
        assert_eq!(redact("room 12 555 234 5678"), "room 12 [phone]");
    }

    #[test]
    fn ordinary_numbers_are_untouched() {
        for text in [
            "I have 3 cats",
            "in 2024",
            "call me at 5",
            "between 1990 and 2024",
            "it costs 1,299.99 dollars",
            "on 12.05.2024 at 10:30",
            "scores 10 20 30 40 50",
            "pin 1 2 3 4",
            "3+4 is 7",
            "the 5th of May, room 101, flight BA2490",
            "server 192.168.1.1",
            "order 1234567890123456789012",
            "id 1234567890",
        ] {
            assert_eq!(redact(text), text, "{text}");
        }
        // 16 digits grouped like a card but failing Luhn: an order number.
        assert!(!luhn(b"1234567812345678"));
        assert_eq!(
            redact("order 1234 5678 1234 5678"),
            "order 1234 5678 1234 5678"
        );
        assert_eq!(redact("order 1234567812345678"), "order 1234567812345678");
    }

    #[test]
    fn kinds_and_replacement_are_configurable() {
        let only_email = Redactor::new(&[PiiKind::Email], Some("***"));
        assert_eq!(
            only_email
                .redact("bob@example.com 4111111111111111 555-234-5678")
                .unwrap(),
            "*** 4111111111111111 555-234-5678"
        );
        let numbers = Redactor::new(&[PiiKind::Phone, PiiKind::Card], Some("#"));
        assert_eq!(
            numbers.redact("bob@example.com 4111111111111111").unwrap(),
            "bob@example.com #"
        );
        assert!(all().redact("nothing here").is_none());
    }

    #[test]
    fn settings_are_checked() {
        let cfg = |v: serde_json::Value| {
            PluginConfig::from_value("plugins.processors.pii.config", v).unwrap()
        };
        let r = Redactor::from_config(&cfg(serde_json::json!({}))).unwrap();
        assert_eq!(
            r.redact("a@b.io 4111111111111111 555-234-5678").unwrap(),
            "[email] [card] [phone]"
        );
        let r = Redactor::from_config(&cfg(
            serde_json::json!({"kinds": ["Card"], "replacement": "#"}),
        ))
        .unwrap();
        assert_eq!(r.redact("a@b.io 4111111111111111").unwrap(), "a@b.io #");
        for bad in [
            serde_json::json!({"kinds": ["ssn"]}),
            serde_json::json!({"kinds": "email"}),
            serde_json::json!({"replacement": "x".repeat(65)}),
            serde_json::json!({"replace": "x"}),
        ] {
            let e = Redactor::from_config(&cfg(bad.clone())).unwrap_err();
            assert!(matches!(e, PluginError::Config(_)), "{bad}: {e}");
            assert!(
                e.to_string().contains("plugins.processors.pii.config"),
                "{e}"
            );
        }
    }

    #[test]
    fn non_ascii_text_is_safe() {
        assert_eq!(redact("écris à zoé@exemple.fr"), "écris à [email]");
        assert_eq!(redact("«bob@example.com»"), "«[email]»");
        assert_eq!(
            redact("numéro: 555 234 5678 — merci"),
            "numéro: [phone] — merci"
        );
        assert_eq!(redact("ü@ü.de ５５５"), "[email] ５５５");
    }

    #[test]
    fn long_adversarial_input_is_handled() {
        // Worst cases for the scanners: endless digit groups, `@`s and dots (100 KiB each).
        let digits = "1 ".repeat(50 * 1024);
        let out = redact(&digits);
        assert!(out.contains("[phone]") || out.contains("[card]"));
        let ats = "a@".repeat(50 * 1024);
        assert_eq!(redact(&ats), ats);
        let dots = format!("a@{}", "bc.".repeat(30 * 1024));
        assert_eq!(redact(&dots), "[email].");
        let mixed = "12-34.(56) ".repeat(10 * 1024);
        assert_eq!(redact(&mixed), mixed);
        let spaced = "é @ ".repeat(20 * 1024);
        assert_eq!(redact(&spaced), spaced);
    }
}
