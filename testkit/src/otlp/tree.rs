//! Traces as trees: grouping spans by trace, checking parentage, and rendering a trace as an
//! indented text tree, one line per span, for assertions and for the docs.
//!
//! ```text
//! edge-a: send_to_peer (12ms)
//!   router: apply (3ms)
//!   edge-b: deliver (1ms)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Result, bail};

use super::ReceivedSpan;

/// The spans grouped by trace id; each trace's spans in start order (ties by name).
pub fn group_traces(spans: &[ReceivedSpan]) -> BTreeMap<String, Vec<ReceivedSpan>> {
    let mut traces: BTreeMap<String, Vec<ReceivedSpan>> = BTreeMap::new();
    for span in spans {
        traces
            .entry(span.trace_id.clone())
            .or_default()
            .push(span.clone());
    }
    for trace in traces.values_mut() {
        sort(trace);
    }
    traces
}

/// The spans of `spans` whose parent is `parent` (same trace), in start order.
pub fn children_of(spans: &[ReceivedSpan], parent: &ReceivedSpan) -> Vec<ReceivedSpan> {
    let mut children: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|span| {
            span.trace_id == parent.trace_id
                && span.parent_span_id.as_deref() == Some(parent.span_id.as_str())
        })
        .cloned()
        .collect();
    sort(&mut children);
    children
}

/// Checks that `trace` is one well-formed tree: not empty, one trace id, no span id twice, exactly
/// one root, and every other span's parent present. The error names the offending spans.
pub fn check_tree(trace: &[ReceivedSpan]) -> Result<()> {
    let Some(first) = trace.first() else {
        bail!("the trace has no spans");
    };
    if let Some(other) = trace.iter().find(|span| span.trace_id != first.trace_id) {
        bail!(
            "spans of two traces: {} and {} ({})",
            first.trace_id,
            other.trace_id,
            other.name
        );
    }
    let mut ids = BTreeSet::new();
    for span in trace {
        if !ids.insert(span.span_id.as_str()) {
            bail!("span id {} appears twice ({})", span.span_id, span.name);
        }
    }
    let mut roots = Vec::new();
    for span in trace {
        match &span.parent_span_id {
            None => roots.push(span.name.as_str()),
            Some(parent) if !ids.contains(parent.as_str()) => bail!(
                "span {} ({}: {}) has parent {parent}, which is not in trace {}:\n{}",
                span.span_id,
                span.service_name,
                span.name,
                span.trace_id,
                render_tree(trace)
            ),
            Some(_) => {}
        }
    }
    if roots.len() != 1 {
        bail!(
            "trace {} has {} roots ({roots:?}), not one:\n{}",
            first.trace_id,
            roots.len(),
            render_tree(trace)
        );
    }
    Ok(())
}

/// Renders `trace` as an indented tree: `service: name (duration)` per line, children two spaces
/// deeper than their parent and in start order. A span whose parent is missing is shown as a root,
/// marked `[parent <id> missing]`, so a broken trace still renders in full.
pub fn render_tree(trace: &[ReceivedSpan]) -> String {
    let ids: BTreeSet<&str> = trace.iter().map(|span| span.span_id.as_str()).collect();
    let mut roots: Vec<ReceivedSpan> = trace
        .iter()
        .filter(|span| {
            span.parent_span_id
                .as_deref()
                .is_none_or(|parent| !ids.contains(parent))
        })
        .cloned()
        .collect();
    sort(&mut roots);
    let mut text = String::new();
    for root in &roots {
        render(trace, root, 0, &mut text);
    }
    text
}

fn render(trace: &[ReceivedSpan], span: &ReceivedSpan, depth: usize, text: &mut String) {
    let _ = write!(
        text,
        "{:indent$}{}: {} ({:?})",
        "",
        span.service_name,
        span.name,
        span.duration(),
        indent = depth * 2
    );
    if depth == 0
        && let Some(parent) = &span.parent_span_id
    {
        let _ = write!(text, " [parent {parent} missing]");
    }
    text.push('\n');
    for child in children_of(trace, span) {
        render(trace, &child, depth + 1, text);
    }
}

fn sort(spans: &mut [ReceivedSpan]) {
    spans.sort_by(|a, b| (a.start_time_unix_nano, &a.name).cmp(&(b.start_time_unix_nano, &b.name)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::SpanKind;

    fn span(
        id: &str,
        parent: Option<&str>,
        name: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> ReceivedSpan {
        ReceivedSpan {
            trace_id: "t".repeat(32),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: name.into(),
            kind: SpanKind::Internal,
            service_name: "svc".into(),
            scope_name: String::new(),
            attributes: BTreeMap::new(),
            start_time_unix_nano: start_ms * 1_000_000,
            end_time_unix_nano: end_ms * 1_000_000,
        }
    }

    #[test]
    fn a_tree_renders_indented_in_start_order() {
        let trace = vec![
            span("c", Some("a"), "second", 5, 6),
            span("a", None, "root", 0, 10),
            span("b", Some("a"), "first", 1, 3),
            span("d", Some("b"), "nested", 2, 3),
        ];
        check_tree(&trace).unwrap();
        assert_eq!(
            render_tree(&trace),
            "svc: root (10ms)\n  svc: first (2ms)\n    svc: nested (1ms)\n  svc: second (1ms)\n"
        );
    }

    #[test]
    fn a_missing_parent_fails_the_check_and_is_marked() {
        let trace = vec![
            span("a", None, "root", 0, 1),
            span("b", Some("x"), "lost", 0, 1),
        ];
        let error = check_tree(&trace).unwrap_err().to_string();
        assert!(error.contains("has parent x"), "{error}");
        assert!(render_tree(&trace).contains("svc: lost (1ms) [parent x missing]"));
    }

    #[test]
    fn two_roots_or_duplicate_ids_fail_the_check() {
        let two_roots = vec![span("a", None, "one", 0, 1), span("b", None, "two", 0, 1)];
        assert!(check_tree(&two_roots).is_err());
        let twice = vec![
            span("a", None, "one", 0, 1),
            span("a", Some("a"), "two", 0, 1),
        ];
        assert!(check_tree(&twice).is_err());
        assert!(check_tree(&[]).is_err());
    }
}
