//! W3C trace context (`traceparent`, `tracestate`) in NATS message headers, so that one trace
//! spans the processes a message passes through. Both are no-ops when tracing is off.

use async_nats::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct Headers<'a>(&'a mut HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct ReadHeaders<'a>(&'a HeaderMap);

impl Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Adds the current span's trace context to `headers` (`traceparent`, and `tracestate` when
/// there is one). Nothing when tracing is off or no span is recorded.
pub fn inject(headers: &mut HeaderMap) {
    if !super::enabled() {
        return;
    }
    let span = tracing::Span::current();
    if span.is_none() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut Headers(headers));
}

/// The trace context `headers` carry, to be the parent of the span that handles the message
/// (`span.set_parent(extract(headers))`). An empty context when tracing is off or the headers
/// carry none.
pub fn extract(headers: &HeaderMap) -> Context {
    if !super::enabled() {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&ReadHeaders(headers))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt as _;

    use super::*;

    // The unit tests never install a pipeline (tests/trace_export.rs does, in its own process).
    #[test]
    fn off_neither_adds_nor_reads_headers() {
        let mut headers = HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        assert!(!extract(&headers).span().span_context().is_valid());
    }
}
