//! Full-text search tokens: one tokenizer for what is indexed and what is
//! asked, the same on every store.
//!
//! Text is lower-cased and split into runs of letters and digits. Words of
//! alphabetic scripts are tokens as they are; runs of CJK characters (Han,
//! kana, Hangul), which have no spaces between words, become their
//! overlapping character pairs plus the run's last character alone, so
//! every character starts a token: `"iPhone很好用"` is indexed as `iphone 很好
//! 好用 用`. A query word matches a token (the last one as a prefix, for
//! search as you type); a CJK query of two or more characters matches its
//! pairs as a phrase (adjacent), one character matches as a prefix. This is
//! the CJK-bigram scheme of Lucene's `cjk` analyzer and pg_bigm, done here
//! so SQLite FTS5 and PostgreSQL `tsvector('simple')` index the same tokens.
//!
//! A recall removes a message's tokens from SQLite's contentless index by
//! giving them again, so they must be exactly those indexed: changing this
//! tokenizer means reindexing ([`TOKENIZER_VERSION`]).

use im_protocol::v1;
use v1::content::Kind;

/// Bumped with every change to the tokens produced; stores reindex then.
pub const TOKENIZER_VERSION: u32 = 1;
/// The longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The longest word indexed, in characters (longer ones are cut).
const MAX_WORD_CHARS: usize = 64;

/// True for the scripts written without spaces between words.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF // hiragana, katakana
        | 0x31F0..=0x31FF // katakana extensions
        | 0x3400..=0x4DBF // Han extension A
        | 0x4E00..=0x9FFF // Han
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0x1100..=0x11FF | 0x3130..=0x318F // Hangul jamo
        | 0xF900..=0xFAFF // Han compatibility
        | 0xFF66..=0xFF9F // half-width katakana
        | 0x20000..=0x3FFFF) // Han extensions B and later
}

/// One piece of text: a word, or a run of CJK characters.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    Word(String),
    Cjk(Vec<char>),
}

fn runs(text: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk: Vec<char> = Vec::new();
    let flush = |out: &mut Vec<Run>, word: &mut String, cjk: &mut Vec<char>| {
        if !word.is_empty() {
            out.push(Run::Word(
                std::mem::take(word).chars().take(MAX_WORD_CHARS).collect(),
            ));
        }
        if !cjk.is_empty() {
            out.push(Run::Cjk(std::mem::take(cjk)));
        }
    };
    for c in text.chars().flat_map(char::to_lowercase) {
        if is_cjk(c) {
            if !word.is_empty() {
                flush(&mut out, &mut word, &mut cjk);
            }
            cjk.push(c);
        } else if c.is_alphanumeric() {
            if !cjk.is_empty() {
                flush(&mut out, &mut word, &mut cjk);
            }
            word.push(c);
        } else {
            flush(&mut out, &mut word, &mut cjk);
        }
    }
    flush(&mut out, &mut word, &mut cjk);
    out
}

/// The tokens of a CJK run: its pairs, then its last character.
fn cjk_tokens(run: &[char]) -> Vec<String> {
    let mut out: Vec<String> = run.windows(2).map(|w| w.iter().collect()).collect();
    if let Some(last) = run.last() {
        out.push(last.to_string());
    }
    out
}

/// The tokens to index for `text`, space-separated (empty: nothing).
pub fn index_tokens(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for run in runs(text) {
        match run {
            Run::Word(w) => out.push(w),
            Run::Cjk(c) => out.extend(cjk_tokens(&c)),
        }
    }
    out.join(" ")
}

/// The searchable text of a message's content: text, captions, file
/// names, location labels, and those of forwarded messages.
pub fn content_text(content: &v1::Content) -> String {
    let mut parts: Vec<&str> = Vec::new();
    collect_text(content, &mut parts);
    parts.join("\n")
}

fn collect_text<'a>(content: &'a v1::Content, parts: &mut Vec<&'a str>) {
    match &content.kind {
        Some(Kind::Text(t)) => parts.push(&t.body),
        Some(Kind::Image(m) | Kind::Audio(m) | Kind::Video(m) | Kind::File(m) | Kind::Voice(m)) => {
            parts.push(&m.caption);
            parts.push(&m.name);
        }
        Some(Kind::Location(l)) => parts.push(&l.label),
        Some(Kind::Bundle(b)) => {
            for item in &b.items {
                if let Some(c) = &item.content {
                    collect_text(c, parts);
                }
            }
        }
        _ => {}
    }
}

/// The tokens to index for a message's content.
pub fn content_tokens(content: &v1::Content) -> String {
    index_tokens(&content_text(content))
}

/// One condition of a query; all of them must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// This token.
    Word(String),
    /// A token starting with this.
    Prefix(String),
    /// These tokens, adjacent and in this order.
    Phrase(Vec<String>),
}

/// A parsed search query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// What must all hold.
    pub terms: Vec<Term>,
}

impl SearchQuery {
    /// Parses a query; `None` when it holds nothing to search for.
    pub fn parse(query: &str) -> Option<Self> {
        let runs = runs(query);
        let n = runs.len();
        let terms: Vec<Term> = runs
            .into_iter()
            .enumerate()
            .map(|(i, run)| match run {
                Run::Word(w) if i + 1 == n => Term::Prefix(w),
                Run::Word(w) => Term::Word(w),
                Run::Cjk(c) if c.len() == 1 => Term::Prefix(c[0].to_string()),
                Run::Cjk(c) => Term::Phrase(c.windows(2).map(|w| w.iter().collect()).collect()),
            })
            .collect();
        (!terms.is_empty()).then_some(Self { terms })
    }

    /// The query in SQLite FTS5's syntax. Tokens hold only letters and
    /// digits: nothing to escape.
    pub fn fts5(&self) -> String {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| match t {
                Term::Word(w) => format!("\"{w}\""),
                Term::Prefix(p) => format!("\"{p}\"*"),
                Term::Phrase(ps) => format!("\"{}\"", ps.join(" ")),
            })
            .collect();
        parts.join(" AND ")
    }

    /// The query in PostgreSQL's `to_tsquery('simple', ...)` syntax.
    pub fn tsquery(&self) -> String {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| match t {
                Term::Word(w) => format!("'{w}'"),
                Term::Prefix(p) => format!("'{p}':*"),
                Term::Phrase(ps) => {
                    let quoted: Vec<String> = ps.iter().map(|p| format!("'{p}'")).collect();
                    format!("({})", quoted.join(" <-> "))
                }
            })
            .collect();
        parts.join(" & ")
    }

    /// Whether indexed tokens (as [`index_tokens`] wrote them) match: the
    /// memory store's search, with the semantics of the SQL ones.
    pub fn matches(&self, tokens: &str) -> bool {
        let tokens: Vec<&str> = tokens.split(' ').filter(|t| !t.is_empty()).collect();
        self.terms.iter().all(|term| match term {
            Term::Word(w) => tokens.contains(&w.as_str()),
            Term::Prefix(p) => tokens.iter().any(|t| t.starts_with(p.as_str())),
            Term::Phrase(ps) => tokens
                .windows(ps.len())
                .any(|w| w.iter().zip(ps).all(|(t, p)| *t == p.as_str())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_cjk_pairs() {
        assert_eq!(index_tokens("iPhone很好用!"), "iphone 很好 好用 用");
        assert_eq!(index_tokens("Hello, wörld: 123"), "hello wörld 123");
        assert_eq!(
            index_tokens("你好世界！今日はいい天気ですね"),
            "你好 好世 世界 界 今日 日は はい いい い天 天気 気で です すね ね"
        );
        assert_eq!(index_tokens("  ...  "), "");
    }

    #[test]
    fn queries_match_what_was_indexed() {
        let indexed = index_tokens("Meeting at 10, 明天在东京见面。今日はいい天気ですね");
        let hit = |q: &str| SearchQuery::parse(q).unwrap().matches(&indexed);
        for q in [
            "meeting",
            "MEET",
            "meeting 10",
            "东京",
            "明天在东京",
            "东",
            "天気",
            "天気です",
            "meeting 东京",
        ] {
            assert!(hit(q), "{q}");
        }
        for q in ["meetings", "京东", "东京见面吧", "明後日", "meeting tomorrow"] {
            assert!(!hit(q), "{q}");
        }
        assert!(SearchQuery::parse(" ?! ").is_none());
    }

    #[test]
    fn renders_for_each_store() {
        let q = SearchQuery::parse("hello 天気です wor").unwrap();
        assert_eq!(q.fts5(), "\"hello\" AND \"天気 気で です\" AND \"wor\"*");
        assert_eq!(q.tsquery(), "'hello' & ('天気' <-> '気で' <-> 'です') & 'wor':*");
    }
}
