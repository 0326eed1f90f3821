//! [`ReceivedSpan`]: a span as the receiver got it, in plain owned types that tests compare and
//! print without knowing the protobuf structure (resource → scope → span).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// One span received over OTLP, with its resource's `service.name`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The 16-byte trace id, as 32 lowercase hex digits (as in `traceparent`).
    pub trace_id: String,
    /// The 8-byte span id, as 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's span id, `None` for a root span (an empty `parent_span_id` in the proto).
    pub parent_span_id: Option<String>,
    /// The span's name.
    pub name: String,
    /// Server, client, producer, consumer or internal (unspecified when the sender set none).
    pub kind: SpanKind,
    /// The `service.name` attribute of the span's resource; empty if the resource has none.
    pub service_name: String,
    /// The name of the instrumentation scope (the tracer's name).
    pub scope_name: String,
    /// The span's attributes, values rendered as text: strings as they are, numbers and booleans
    /// in Rust's `Display`, bytes in hex, arrays as `[a, b]`, maps as `{k: v}`.
    pub attributes: BTreeMap<String, String>,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
}

impl ReceivedSpan {
    /// End minus start (zero if the sender's clock put the end first).
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(
            self.end_time_unix_nano
                .saturating_sub(self.start_time_unix_nano),
        )
    }

    /// The attribute `key`, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Flattens an export request into spans; refuses ids of the wrong length, as the proto requires
/// (trace id 16 bytes, span id 8, parent span id 8 or empty), so a sender's bug is not papered over.
pub(crate) fn spans_of(request: ExportTraceServiceRequest) -> Result<Vec<ReceivedSpan>, String> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .map(|attribute| render_value(attribute.value.as_ref()))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let scope_name = scope_spans
                .scope
                .map(|scope| scope.name)
                .unwrap_or_default();
            for span in scope_spans.spans {
                let trace_id = id(&span.trace_id, 16, "trace_id")?;
                let span_id = id(&span.span_id, 8, "span_id")?;
                let parent_span_id = if span.parent_span_id.is_empty() {
                    None
                } else {
                    Some(id(&span.parent_span_id, 8, "parent_span_id")?)
                };
                spans.push(ReceivedSpan {
                    trace_id,
                    span_id,
                    parent_span_id,
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    name: span.name,
                    service_name: service_name.clone(),
                    scope_name: scope_name.clone(),
                    attributes: attributes(&span.attributes),
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano,
                });
            }
        }
    }
    Ok(spans)
}

fn id(bytes: &[u8], len: usize, field: &str) -> Result<String, String> {
    if bytes.len() != len {
        return Err(format!(
            "{field} has {} bytes, the OTLP trace proto requires {len}",
            bytes.len()
        ));
    }
    Ok(hex(bytes))
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn attributes(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|attribute| {
            (
                attribute.key.clone(),
                render_value(attribute.value.as_ref()),
            )
        })
        .collect()
}

fn render_value(value: Option<&AnyValue>) -> String {
    let Some(value) = value.and_then(|value| value.value.as_ref()) else {
        return String::new();
    };
    match value {
        any_value::Value::StringValue(text) => text.clone(),
        any_value::Value::BoolValue(flag) => flag.to_string(),
        any_value::Value::IntValue(number) => number.to_string(),
        any_value::Value::DoubleValue(number) => number.to_string(),
        any_value::Value::BytesValue(bytes) => hex(bytes),
        any_value::Value::ArrayValue(array) => {
            let items: Vec<String> = array
                .values
                .iter()
                .map(|item| render_value(Some(item)))
                .collect();
            format!("[{}]", items.join(", "))
        }
        any_value::Value::KvlistValue(list) => {
            let items: Vec<String> = list
                .values
                .iter()
                .map(|pair| format!("{}: {}", pair.key, render_value(pair.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        // Profiling's string-table reference; the proto says to treat it as empty in traces.
        any_value::Value::StringValueStrindex(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request(trace_id: Vec<u8>, parent: Vec<u8>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id,
                        span_id: vec![0xab; 8],
                        parent_span_id: parent,
                        name: "apply".into(),
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    #[test]
    fn ids_are_hex_and_an_empty_parent_is_a_root() {
        let spans = spans_of(request(vec![1; 16], Vec::new())).unwrap();
        assert_eq!(spans[0].trace_id, "01".repeat(16));
        assert_eq!(spans[0].span_id, "ab".repeat(8));
        assert_eq!(spans[0].parent_span_id, None);
        assert_eq!(spans[0].service_name, "");
    }

    #[test]
    fn ids_of_the_wrong_length_are_refused() {
        assert!(spans_of(request(vec![1; 8], Vec::new())).is_err());
        assert!(spans_of(request(vec![1; 16], vec![2; 4])).is_err());
    }

    #[test]
    fn values_render_as_text() {
        let value = AnyValue {
            value: Some(any_value::Value::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::IntValue(3)),
                        },
                        AnyValue {
                            value: Some(any_value::Value::BoolValue(true)),
                        },
                    ],
                },
            )),
        };
        assert_eq!(render_value(Some(&value)), "[3, true]");
    }
}
