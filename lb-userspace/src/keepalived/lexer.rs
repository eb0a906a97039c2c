//! keepalived.conf's words, with `include` files read in place: comments (`!` or `#` outside
//! quotes) and blank lines dropped, `"quoted strings"` kept whole, braces separate words, and
//! each line ending with an end-of-line word. Lines of conditional configuration (`@id ...`) are
//! kept only in their `@^id` form, as keepalived started without `-i`.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::Diagnostic;

/// Where a word was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: Arc<Path>,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One word (or brace, or end of line) and where it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The text, without quotes (empty for an end of line).
    pub text: String,
    /// Its place.
    pub at: Location,
    /// Whether this marks the end of a line.
    pub eol: bool,
}

/// Deepest nesting of `include`s, against a file that includes itself.
const MAX_INCLUDE_DEPTH: usize = 8;

/// The words of `path` and of the files it includes.
pub fn read(path: &Path) -> Result<Vec<Word>, Diagnostic> {
    let mut words = Vec::new();
    read_into(path, None, 0, &mut words)?;
    Ok(words)
}

fn read_into(
    path: &Path,
    from: Option<&Location>,
    depth: usize,
    words: &mut Vec<Word>,
) -> Result<(), Diagnostic> {
    let text = fs::read_to_string(path).map_err(|e| {
        let message = format!("cannot read {}: {e}", path.display());
        match from {
            Some(at) => Diagnostic::at(at, "include", message),
            None => Diagnostic::plain(message),
        }
    })?;
    let file: Arc<Path> = path.into();
    for (n, line) in text.lines().enumerate() {
        let at = Location {
            file: file.clone(),
            line: n + 1,
        };
        let Some(line) = conditional(line) else {
            continue;
        };
        let line_words = split(line, &at);
        if line_words.first().is_some_and(|w| w.text == "include") {
            let [_, pattern] = &line_words[..] else {
                return Err(Diagnostic::at(
                    &at,
                    "include",
                    "takes one file name or pattern",
                ));
            };
            if depth == MAX_INCLUDE_DEPTH {
                return Err(Diagnostic::at(&at, "include", "nested too deep"));
            }
            for included in expand(path, &pattern.text) {
                read_into(&included, Some(&at), depth + 1, words)?;
            }
            continue;
        }
        if !line_words.is_empty() {
            words.extend(line_words);
            words.push(Word {
                text: String::new(),
                at,
                eol: true,
            });
        }
    }
    Ok(())
}

/// The line without its `@^id` prefix; None for an `@id` line (no config id is set).
fn conditional(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    let Some(rest) = trimmed.strip_prefix('@') else {
        return Some(line);
    };
    let rest = rest.strip_prefix('^')?;
    Some(rest.trim_start_matches(|c: char| !c.is_whitespace()))
}

/// Splits one line into words.
fn split(line: &str, at: &Location) -> Vec<Word> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    let word = |text: String| Word {
        text,
        at: at.clone(),
        eol: false,
    };
    while let Some(&c) = chars.peek() {
        match c {
            '!' | '#' => break,
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' | '}' => {
                chars.next();
                words.push(word(c.into()));
            }
            '"' => {
                chars.next();
                let text: String = chars.by_ref().take_while(|&c| c != '"').collect();
                words.push(word(text));
            }
            _ => {
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | '"' | '!' | '#') {
                        break;
                    }
                    text.push(c);
                    chars.next();
                }
                words.push(word(text));
            }
        }
    }
    words
}

/// The files an `include` pattern names, relative to the including file, in sorted order (as
/// glob(3)); a pattern that matches nothing names nothing, as in keepalived.
fn expand(including: &Path, pattern: &str) -> Vec<PathBuf> {
    let pattern = including.parent().unwrap_or(Path::new(".")).join(pattern);
    let mut found = vec![PathBuf::new()];
    for part in pattern.components() {
        let part = part.as_os_str().to_string_lossy();
        if !part.contains(['*', '?', '[']) {
            found.iter_mut().for_each(|p| p.push(&*part));
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && matches(part.as_bytes(), name.as_bytes()) {
                    next.push(dir.join(name));
                }
            }
        }
        next.sort();
        found = next;
    }
    found.retain(|p| p.is_file());
    found
}

/// fnmatch(3) without flags: `*`, `?` and `[...]` (with `!` or `^` to negate, and ranges).
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            matches(&pattern[1..], name) || (!name.is_empty() && matches(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => matches(&pattern[1..], &name[1..]),
        (Some(b'['), Some(&c)) => match class(&pattern[1..], c) {
            Some((true, rest)) => matches(rest, &name[1..]),
            Some((false, _)) => false,
            None => c == b'[' && matches(&pattern[1..], &name[1..]),
        },
        (Some(p), Some(c)) => p == c && matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Whether `c` is in the class at the start of `pattern` (after its `[`), and what follows
/// the class; None if the class is not closed.
fn class(pattern: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, mut p) = match pattern.first() {
        Some(b'!' | b'^') => (true, &pattern[1..]),
        _ => (false, pattern),
    };
    let mut found = false;
    let mut first = true;
    loop {
        match p {
            [b']', rest @ ..] if !first => return Some((found != negated, rest)),
            [lo, b'-', hi, rest @ ..] if *hi != b']' => {
                found |= (*lo..=*hi).contains(&c);
                p = rest;
            }
            [x, rest @ ..] => {
                found |= *x == c;
                p = rest;
            }
            [] => return None,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches(b"*.conf", b"a.conf"));
        assert!(!matches(b"*.conf", b"a.conf~"));
        assert!(matches(b"vs-?[0-9].conf", b"vs-a7.conf"));
        assert!(!matches(b"vs-[!0-9]", b"vs-7"));
        assert!(matches(b"[]]", b"]"));
    }

    #[test]
    fn words_comments_quotes_and_conditionals() {
        let dir = std::env::temp_dir().join(format!("kconf-lexer-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.conf");
        fs::write(
            &path,
            "a b{c}  # comment\n\n! whole line\nmisc_path \"/bin/x -y # z\"\n@high dropped\n@^high kept 1\n",
        )
        .unwrap();
        let words = read(&path).unwrap();
        let texts: Vec<&str> = words
            .iter()
            .map(|w| if w.eol { "EOL" } else { w.text.as_str() })
            .collect();
        assert_eq!(
            texts,
            [
                "a",
                "b",
                "{",
                "c",
                "}",
                "EOL",
                "misc_path",
                "/bin/x -y # z",
                "EOL",
                "kept",
                "1",
                "EOL"
            ]
        );
        assert_eq!(words[6].at.line, 4);
        assert_eq!(words[9].at.line, 6);
        fs::remove_dir_all(&dir).unwrap();
    }
}
