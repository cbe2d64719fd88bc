//! Support for the code `topicbus-derive` generates. Not public API.

use crate::topic::Request;

/// Marker for handlers made by `#[handler]`.
pub struct Macro;

/// Splits a handler's return type into its success and error types.
pub trait HandlerResult {
    type Ok;
    type Err;
}

impl<O, E> HandlerResult for Result<O, E> {
    type Ok = O;
    type Err = E;
}

#[diagnostic::on_unimplemented(
    message = "this handler returns `{Self}`, but `{Req}` is not answered with `{Self}`",
    label = "does not match the `response = ...` type declared in `#[topic(...)]` of `{Req}`",
    note = "a request handler returns `Result<R, E>` where `R` is the request's response type; an event handler returns `Result<(), E>`"
)]
pub trait ResponseOf<Req> {}

impl<Req: Request> ResponseOf<Req> for <Req as Request>::Response {}

/// Compiles only when `Resp` is the response type of `Req`.
pub const fn assert_response<Req, Resp: ResponseOf<Req>>() {}

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
