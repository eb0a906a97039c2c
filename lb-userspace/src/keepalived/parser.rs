//! keepalived.conf's statements: a keyword, its arguments up to the end of the line, and a
//! `{ ... }` block of further statements if one follows (on the same line or the next).

use super::{
    Diagnostic,
    lexer::{Location, Word},
};

/// One statement.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    /// The first word.
    pub keyword: String,
    /// The other words of its line.
    pub args: Vec<String>,
    /// Its block, if it has one.
    pub block: Option<Vec<Statement>>,
    /// Where the keyword was read.
    pub at: Location,
}

/// The statements of a whole file.
pub fn parse(words: &[Word]) -> Result<Vec<Statement>, Diagnostic> {
    let mut words = words.iter().peekable();
    let statements = block(&mut words, None)?;
    Ok(statements)
}

type Words<'a> = std::iter::Peekable<std::slice::Iter<'a, Word>>;

/// Statements up to the `}` closing the block opened at `open` (or up to the end).
fn block(words: &mut Words, open: Option<&Location>) -> Result<Vec<Statement>, Diagnostic> {
    let mut statements = Vec::new();
    loop {
        while words.next_if(|w| w.eol).is_some() {}
        let Some(first) = words.next() else {
            return match open {
                Some(at) => Err(Diagnostic::at(at, "{", "block not closed")),
                None => Ok(statements),
            };
        };
        match first.text.as_str() {
            "}" if open.is_some() => return Ok(statements),
            "}" => return Err(Diagnostic::at(&first.at, "}", "no block to close")),
            "{" => return Err(Diagnostic::at(&first.at, "{", "block without a keyword")),
            _ => {}
        }
        let mut args = Vec::new();
        while let Some(w) = words.next_if(|w| !w.eol && w.text != "{" && w.text != "}") {
            args.push(w.text.clone());
        }
        // A block opens on the keyword's line or alone on the next one.
        let mut ahead = words.clone();
        while ahead.next_if(|w| w.eol).is_some() {}
        let block = match ahead.next() {
            Some(w) if w.text == "{" => {
                *words = ahead;
                Some(block(words, Some(&w.at))?)
            }
            _ => None,
        };
        statements.push(Statement {
            keyword: first.text.clone(),
            args,
            block,
            at: first.at.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use super::*;

    fn words(text: &str) -> Vec<Word> {
        let file: Arc<Path> = Path::new("t.conf").into();
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = Location {
                file: file.clone(),
                line: n + 1,
            };
            for t in line.split_whitespace() {
                out.push(Word {
                    text: t.into(),
                    at: at.clone(),
                    eol: false,
                });
            }
            out.push(Word {
                text: String::new(),
                at,
                eol: true,
            });
        }
        out
    }

    #[test]
    fn nested_blocks_on_one_or_more_lines() {
        let s = parse(&words("a 1 2 {\n b\n c {\n } }\nd\n{\ne 3\n}\nf")).unwrap();
        let shape: Vec<(&str, usize, Option<usize>)> = s
            .iter()
            .map(|s| {
                (
                    s.keyword.as_str(),
                    s.args.len(),
                    s.block.as_ref().map(Vec::len),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [("a", 2, Some(2)), ("d", 0, Some(1)), ("f", 0, None)]
        );
        let a = s[0].block.as_ref().unwrap();
        assert_eq!((a[1].keyword.as_str(), a[1].at.line), ("c", 3));
        assert_eq!(a[1].block.as_deref(), Some(&[][..]));
    }

    #[test]
    fn unbalanced_braces_name_the_line() {
        let e = parse(&words("a {\nb\n")).unwrap_err();
        assert_eq!(e.to_string(), "t.conf:1: `{`: block not closed");
        let e = parse(&words("a\n}\n")).unwrap_err();
        assert_eq!(e.to_string(), "t.conf:2: `}`: no block to close");
    }
}
