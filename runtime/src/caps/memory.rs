//! `rampart:plugin/memory`: read-only recall of what the tenant learned
//! about an entity. Only the host writes entity memory.

use super::{CallView, Caps};
use crate::bindings::memory::{EntityMemory, Host};
use crate::bindings::types::Entity;

impl<T: CallView> Host for Caps<'_, T> {
    fn recall(&mut self, entity: Entity) -> EntityMemory {
        let host_entity: crate::model::Entity = entity.clone().into();
        if let Some(problem) = host_entity.problem() {
            self.0
                .host_warn(&format!("memory recall refused: {problem}"));
            let mut answer = EntityMemory::from(&crate::model::EntityMemory::default());
            answer.entity = entity;
            return answer;
        }
        self.0.charge_bytes(host_entity.value.len());
        let remembered = match self.0.store().memory_recall(self.0.tenant(), &host_entity) {
            Ok(remembered) => remembered,
            Err(err) => {
                // A plugin cannot act on a store failure; it gets "nothing known".
                self.0.host_warn(&format!("memory recall failed: {err}"));
                crate::model::EntityMemory::default()
            }
        };
        let mut answer = EntityMemory::from(&remembered);
        answer.entity = entity;
        answer
    }
}
