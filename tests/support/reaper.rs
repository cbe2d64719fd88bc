//! Child processes that do not outlive a failed test.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// A child process that is killed and reaped when dropped, unless it has
/// exited: a test that fails (or hits its hang guard) leaves nothing
/// running, and nothing holding the test's output open.
pub struct Reaped(pub Child);

impl Deref for Reaped {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
