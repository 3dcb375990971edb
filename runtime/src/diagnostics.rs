//! One problem in a config file (manifest, playbook, server config), with
//! where it is and, where we can tell, how to fix it. Loaders collect every
//! issue before failing so that users fix them all in one go.

use std::fmt;

/// One problem, with its location.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// 1-based column, if known.
    pub column: Option<usize>,
    /// The field, e.g. `steps[2].needs` or `limits.fuel`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, if we can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{line}:{column}: {}: {}", self.field, self.message)?
            }
            (Some(line), None) => write!(f, "{line}: {}: {}", self.field, self.message)?,
            _ => write!(f, "{}: {}", self.field, self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}
