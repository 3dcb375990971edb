//! Support code for the export macros; not part of the public API.

use core::cell::RefCell;

use crate::{ErrorKind, Event, Finding, Hunt, PluginError};

/// Holds a hunt session's state behind the `&self` methods the bindings use.
pub struct HuntCell<H>(RefCell<Option<H>>);

impl<H: Hunt> HuntCell<H> {
    /// Opens a session.
    pub fn open(params: &str) -> Result<Self, PluginError> {
        Ok(Self(RefCell::new(Some(H::open(params)?))))
    }

    /// Pushes one batch.
    pub fn push(&self, events: Vec<Event>) -> Result<Vec<Finding>, PluginError> {
        match self.0.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(hunt) => hunt.push(events),
                None => Err(PluginError::new(ErrorKind::Internal, "session is closed")),
            },
            Err(_) => Err(PluginError::new(ErrorKind::Internal, "session is busy")),
        }
    }

    /// Closes the session.
    pub fn close(self) -> Result<Vec<Finding>, PluginError> {
        match self.0.into_inner() {
            Some(hunt) => hunt.close(),
            None => Err(PluginError::new(ErrorKind::Internal, "session is closed")),
        }
    }
}
