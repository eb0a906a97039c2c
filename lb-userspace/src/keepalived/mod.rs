//! keepalived.conf as the operator wrote it for keepalived's checker: its `virtual_server`,
//! `virtual_server_group` and `real_server` blocks with their checkers become the same
//! [`Config`](crate::config::Config) as the TOML file. What belongs to keepalived's VRRP side
//! is skipped silently; what xdpvs does not do is an error naming the file, line and keyword.

mod convert;
mod lexer;
mod parser;

use std::{fmt, path::Path};

pub use lexer::Location;

use crate::config::Loaded;

/// An error or a warning about a keyword at a place of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where, if it is about one place.
    pub at: Option<Location>,
    /// The keyword concerned.
    pub keyword: String,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// About `keyword` at `at`.
    pub fn at(at: &Location, keyword: &str, message: impl Into<String>) -> Self {
        Self {
            at: Some(at.clone()),
            keyword: keyword.into(),
            message: message.into(),
        }
    }

    /// About the configuration as a whole.
    pub fn plain(message: impl Into<String>) -> Self {
        Self {
            at: None,
            keyword: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: `{}`: {}", self.keyword, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// Reads keepalived.conf at `path` and the files it includes.
pub fn load(path: &Path) -> Result<Loaded, Diagnostic> {
    let words = lexer::read(path)?;
    let statements = parser::parse(&words)?;
    convert::convert(&statements)
}

#[cfg(test)]
mod tests;
