//! Support for the code `topicbus-derive` generates. Not public API.

// Defined where users meet them: compiler errors name an item by where it
// is defined, and `topicbus::handler::HandlerResult` reads better in one
// than a path through this module.
pub use crate::handler::{assert_response, HandlerResult, Macro, ResponseOf, Same};

/// Autoref-specialised clone: `(&&CloneProbe(v)).probe_clone()` is
/// `Some(v.clone())` when the type is `Clone`, `None` otherwise.
pub struct CloneProbe<'a, T>(pub &'a T);

pub trait ViaClone<T> {
    fn probe_clone(&self) -> Option<T>;
}

impl<T: Clone> ViaClone<T> for &CloneProbe<'_, T> {
    fn probe_clone(&self) -> Option<T> {
        Some(self.0.clone())
    }
}

pub trait ViaNothing<T> {
    fn probe_clone(&self) -> Option<T>;
}

impl<T> ViaNothing<T> for CloneProbe<'_, T> {
    fn probe_clone(&self) -> Option<T> {
        None
    }
}
