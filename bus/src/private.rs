//! Support for the code `topicbus-derive` generates. Not public API.

use crate::topic::Request;

/// Marker for handlers made by `#[handler]`.
pub struct Macro;

/// Splits a handler's return type into its success and error types.
#[diagnostic::on_unimplemented(
    message = "a handler returns a `Result`, not `{Self}`",
    label = "expected `Result<_, E>` here",
    note = "return `Result<(), E>` to handle an event, or `Result<Response, E>` to answer a request, where `E: Display`"
)]
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

// Through `Same` rather than `impl ResponseOf<Req> for Req::Response`: a
// mismatch is then an unmet bound, which shows the message above, instead of
// a projection mismatch ("type mismatch resolving ..."), which does not.
impl<Req: Request, Resp: Same<Req::Response>> ResponseOf<Req> for Resp {}

/// `T: Same<U>` holds exactly when `T` and `U` are the same type.
pub trait Same<T> {}

impl<T> Same<T> for T {}

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
