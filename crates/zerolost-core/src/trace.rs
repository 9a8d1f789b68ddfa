//! W3C Trace Context (`traceparent`) carried in message headers, so a consumer's span
//! names the trace and the producer's span it continues.
//!
//! zerolost does not depend on an OpenTelemetry SDK: the producer puts a `traceparent`
//! on the [`Envelope`](crate::Envelope) (its own, from its tracing stack, or a fresh one
//! from [`TraceParent::new_root`]); the outbox stores it with the other headers, every
//! broker carries it, and the consumer's `zerolost.consume` span records `trace_id` and
//! `parent_span_id` from it, which any tracing backend can join on.
//!
//! ```
//! use zerolost_core::{Envelope, trace::TraceParent};
//! let parent = TraceParent::new_root();
//! let envelope = Envelope::new("orders", "order 7").with_trace_parent(&parent);
//! let carried = TraceParent::parse(&envelope.headers["traceparent"]).unwrap();
//! assert_eq!(carried, parent);
//! assert_eq!(carried.child().trace_id, parent.trace_id);
//! ```

use std::fmt;

/// The header name (W3C Trace Context, lower case as the spec recommends).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A parsed `traceparent`: version 00, a 128-bit trace id, the 64-bit id of the span
/// that sent the message, and the sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace every span of this message's journey belongs to (never zero).
    pub trace_id: u128,
    /// The producing span's id (never zero).
    pub parent_id: u64,
    /// Whether the producer sampled (recorded) this trace.
    pub sampled: bool,
}

impl TraceParent {
    /// A new trace with random ids, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero(rand::random()),
            parent_id: nonzero(rand::random()),
            sampled: true,
        }
    }

    /// The same trace with a new span id: what a hop passes on.
    pub fn child(&self) -> Self {
        Self {
            parent_id: nonzero(rand::random()),
            ..*self
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else (an all-zero id,
    /// wrong lengths, upper-case hex, unknown version 00 layout), as the spec asks.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if version != "00"
            || parts.next().is_some()
            || !lower_hex(trace, 32)
            || !lower_hex(parent, 16)
            || !lower_hex(flags, 2)
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|v| *v != 0)?;
        let parent_id = u64::from_str_radix(parent, 16).ok().filter(|v| *v != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The parent span id as 16 lower-case hex digits.
    pub fn parent_id_hex(&self) -> String {
        format!("{:016x}", self.parent_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.parent_id,
            u8::from(self.sampled)
        )
    }
}

fn nonzero<T: Default + PartialEq + From<u8>>(value: T) -> T {
    if value == T::default() {
        T::from(1)
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_malformed_values() {
        let spec = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(spec).unwrap();
        assert_eq!(parsed.to_string(), spec);
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id_hex(), "00f067aa0ba902b7");
        assert!(parsed.sampled);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let root = TraceParent::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.parent_id, root.parent_id);
    }
}
