//! Which step outputs an expression reads (`steps.<id>.<field>`, or
//! `steps['<id>']['<field>']`), checked at upload against the playbook: the
//! step exists, runs before the one reading it (a direct or transitive
//! `needs`), and its kind's output has that field
//! ([`super::output::fields`]). Without this a typo passes `check` and
//! fails every run ("No such key: rsk").

use std::collections::{BTreeMap, BTreeSet};

use cel::common::ast::{Expr, LiteralValue};

use super::StepKind;
use super::output::fields;

/// One read of a step's output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StepRef {
    id: String,
    field: Option<String>,
}

/// What is known of each step at check time: its kind (when it names one
/// plugin) and its `needs`.
pub(super) type StepShapes = BTreeMap<String, (Option<StepKind>, Vec<String>)>;

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(LiteralValue::String(text)) => Some(text.inner().to_owned()),
        _ => None,
    }
}

fn is_steps(expr: &Expr) -> bool {
    matches!(expr, Expr::Ident(name) if name == "steps")
}

/// `steps.<id>` or `steps['<id>']`: the id.
fn step_member(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Select(select) if is_steps(&select.operand.expr) => Some(select.field.clone()),
        Expr::Call(call) if call.func_name == "_[_]" => match call.args.as_slice() {
            [operand, index] if is_steps(&operand.expr) => string_literal(&index.expr),
            _ => None,
        },
        _ => None,
    }
}

fn collect(expr: &Expr, out: &mut Vec<StepRef>) {
    if let Some(id) = step_member(expr) {
        out.push(StepRef { id, field: None });
        return;
    }
    match expr {
        Expr::Select(select) => match step_member(&select.operand.expr) {
            Some(id) => out.push(StepRef {
                id,
                field: Some(select.field.clone()),
            }),
            None => collect(&select.operand.expr, out),
        },
        Expr::Call(call) => {
            if call.func_name == "_[_]"
                && let [operand, index] = call.args.as_slice()
                && let (Some(id), Some(field)) =
                    (step_member(&operand.expr), string_literal(&index.expr))
            {
                out.push(StepRef {
                    id,
                    field: Some(field),
                });
                return;
            }
            if let Some(target) = &call.target {
                collect(&target.expr, out);
            }
            for arg in &call.args {
                collect(&arg.expr, out);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                collect(&element.expr, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr {
                    collect(&entry.key.expr, out);
                    collect(&entry.value.expr, out);
                }
            }
        }
        Expr::Struct(structure) => {
            for entry in &structure.entries {
                if let cel::common::ast::EntryExpr::StructField(field) = &entry.expr {
                    collect(&field.value.expr, out);
                }
            }
        }
        Expr::Comprehension(comprehension) => {
            for part in [
                &comprehension.iter_range,
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                collect(&part.expr, out);
            }
        }
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
    }
}

/// Every step `id` runs after: its needs, and theirs.
fn upstream(id: &str, shapes: &StepShapes) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue: Vec<String> = shapes.get(id).map(|s| s.1.clone()).unwrap_or_default();
    while let Some(next) = queue.pop() {
        if seen.insert(next.clone())
            && let Some((_, needs)) = shapes.get(&next)
        {
            queue.extend(needs.iter().cloned());
        }
    }
    seen
}

/// The problems (message, hint) of the step outputs `expr` reads, when it
/// is evaluated for step `using` — or, with `None`, before any step runs
/// (the trigger and dedup keys).
pub(super) fn problems(
    expr: &Expr,
    using: Option<&str>,
    shapes: &StepShapes,
) -> Vec<(String, Option<String>)> {
    let mut refs = Vec::new();
    collect(expr, &mut refs);
    let mut out = Vec::new();
    let Some(using) = using else {
        if let Some(first) = refs.first() {
            out.push((
                format!("reads `steps.{}`, but no step has run yet here", first.id),
                Some("the trigger and dedup keys see only `alert`".to_owned()),
            ));
        }
        return out;
    };
    let before = upstream(using, shapes);
    for step_ref in refs {
        let StepRef { id, field } = step_ref;
        let Some((kind, _)) = shapes.get(&id) else {
            let known: Vec<&str> = shapes.keys().map(String::as_str).collect();
            out.push((
                format!("reads `steps.{id}`, but there is no step `{id}`"),
                Some(format!("steps are: {}", known.join(", "))),
            ));
            continue;
        };
        if id == using {
            out.push((
                format!("step `{using}` reads its own output `steps.{id}`"),
                None,
            ));
            continue;
        }
        if !before.contains(&id) {
            out.push((
                format!(
                    "reads `steps.{id}`, but step `{using}` does not need `{id}` (directly or through another step), so it may not have run"
                ),
                Some(format!("add `{id}` to `needs`")),
            ));
            continue;
        }
        if let (Some(kind), Some(field)) = (kind, field)
            && !fields(*kind).contains(&field.as_str())
        {
            out.push((
                format!("step `{id}` has no output field `{field}`"),
                Some(format!("its fields are: {}", fields(*kind).join(", "))),
            ));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn shapes() -> StepShapes {
        BTreeMap::from([
            ("ti".to_owned(), (Some(StepKind::Enrich), vec![])),
            (
                "risk".to_owned(),
                (Some(StepKind::Score), vec!["ti".to_owned()]),
            ),
            (
                "act".to_owned(),
                (Some(StepKind::Respond), vec!["risk".to_owned()]),
            ),
            ("lone".to_owned(), (Some(StepKind::Respond), vec![])),
        ])
    }

    fn check(source: &str, using: Option<&str>) -> Vec<String> {
        let expr = super::super::Expr::compile(source).expect("compiles");
        problems(expr.ast(), using, &shapes())
            .into_iter()
            .map(|(message, _)| message)
            .collect()
    }

    #[test]
    fn reads_of_upstream_fields_pass() {
        assert!(
            check(
                "steps.risk.score >= 80 && steps.ti.verdict == 'malicious'",
                Some("act")
            )
            .is_empty()
        );
        assert!(check("steps['risk']['confidence'] > 1", Some("act")).is_empty());
        assert!(check("has(steps.risk.reasons)", Some("act")).is_empty());
        assert!(
            check(
                "steps.ti.enrichments.exists(e, e.confidence > 50)",
                Some("act")
            )
            .is_empty()
        );
    }

    #[test]
    fn unknown_steps_fields_and_unordered_reads_are_named() {
        assert_eq!(
            check("steps.rsk.score > 1", Some("act")),
            ["reads `steps.rsk`, but there is no step `rsk`"]
        );
        assert_eq!(
            check("steps.risk.scor > 1", Some("act")),
            ["step `risk` has no output field `scor`"]
        );
        assert_eq!(
            check("steps.risk.score > 1", Some("lone")),
            [
                "reads `steps.risk`, but step `lone` does not need `risk` (directly or through another step), so it may not have run"
            ]
        );
        assert_eq!(
            check("steps.act.outcome == 'x'", Some("act")),
            ["step `act` reads its own output `steps.act`"]
        );
        assert_eq!(
            check("alert.severity == 'high' || steps.ti.count > 0", None).len(),
            1
        );
    }
}
