//! The reply path's defences: which topics a responder answers on
//! ([`topics`]), reply authentication with a shared key ([`key`]), and the
//! checks a reply passes before the requester takes it ([`read`]).
//! docs/security-replies.md describes them for users.

pub(crate) mod key;
pub(crate) mod read;
pub(crate) mod topics;

pub use key::ReplyKey;
