//! What the tenant learned about an entity before (capability `memory`).
//!
//! Read-only: the host records verdicts of past runs and analyst feedback.

use crate::{Entity, EntityMemory, FeedbackLabel};

/// Everything the tenant remembers about `entity`.
pub fn recall(entity: &Entity) -> EntityMemory {
    crate::bindings::rampart::plugin::memory::recall(entity)
}

impl EntityMemory {
    /// Whether an analyst has marked a run about this entity a false positive
    /// or benign more recently than a true positive.
    pub fn analysts_say_harmless(&self) -> bool {
        // Feedback is newest first: the latest label wins.
        self.feedback.first().is_some_and(|latest| {
            matches!(
                latest.label,
                FeedbackLabel::FalsePositive | FeedbackLabel::Benign
            )
        })
    }
}
