//! The cost of a CEL expression, bounded before it runs.
//!
//! cel-rust's interpreter has no step budget and cannot be interrupted, so
//! the bound is computed from the expression's tree instead: every node costs
//! one step, and a comprehension (`all`, `exists`, `exists_one`, `map`,
//! `filter`) costs its body once per item of the list it walks. At upload the
//! list length is taken as [`STATIC_LIST_BOUND`] (the most entities an alert
//! may carry); before each evaluation it is the longest list in that
//! evaluation's variables, so a step output with thousands of items cannot
//! turn a cheap-looking expression into a long one. An expression over
//! [`MAX_EXPR_COST`] is refused at upload, or cut before it runs.

use cel::common::ast::{EntryExpr, Expr};

/// The list length assumed when an expression is checked at upload: the
/// most entities an alert may carry.
pub const STATIC_LIST_BOUND: u64 = crate::model::MAX_ALERT_ENTITIES as u64;

/// The most steps an expression may cost. About 10 ms of interpretation:
/// one comprehension over a full alert with a body of ~200 nodes, never a
/// nesting of two over full lists.
pub const MAX_EXPR_COST: u64 = 200_000;

/// The cost of `expr` when every list it walks has `list_len` items
/// (saturating, so a deep nesting reads as `u64::MAX`).
pub fn cost(expr: &Expr, list_len: u64) -> u64 {
    let of = |child: &cel::IdedExpr| cost(&child.expr, list_len);
    match expr {
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => 1,
        Expr::Select(select) => of(&select.operand).saturating_add(1),
        Expr::Call(call) => call
            .args
            .iter()
            .map(of)
            .fold(call.target.as_deref().map_or(1, of), u64::saturating_add)
            .saturating_add(1),
        Expr::List(list) => list.elements.iter().map(of).fold(1, u64::saturating_add),
        Expr::Map(map) => map
            .entries
            .iter()
            .map(|entry| entry_cost(&entry.expr, list_len))
            .fold(1, u64::saturating_add),
        Expr::Struct(structure) => structure
            .entries
            .iter()
            .map(|entry| entry_cost(&entry.expr, list_len))
            .fold(1, u64::saturating_add),
        Expr::Comprehension(comprehension) => {
            let per_item =
                of(&comprehension.loop_cond).saturating_add(of(&comprehension.loop_step));
            of(&comprehension.iter_range)
                .saturating_add(of(&comprehension.accu_init))
                .saturating_add(per_item.saturating_mul(list_len.max(1)))
                .saturating_add(of(&comprehension.result))
        }
    }
}

fn entry_cost(entry: &EntryExpr, list_len: u64) -> u64 {
    match entry {
        EntryExpr::StructField(field) => cost(&field.value.expr, list_len),
        EntryExpr::MapEntry(entry) => {
            cost(&entry.key.expr, list_len).saturating_add(cost(&entry.value.expr, list_len))
        }
    }
}

/// The longest list anywhere in `value`.
pub fn longest_list(value: &serde_json::Value) -> u64 {
    match value {
        serde_json::Value::Array(items) => items
            .iter()
            .map(longest_list)
            .fold(items.len() as u64, u64::max),
        serde_json::Value::Object(fields) => fields.values().map(longest_list).fold(0, u64::max),
        _ => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cost_of(source: &str, list_len: u64) -> u64 {
        let program = cel::Program::compile(source).expect("compiles");
        cost(&program.expression().expr, list_len)
    }

    #[test]
    fn a_comprehension_costs_its_body_per_item() {
        let flat = cost_of("alert.severity == 'high'", STATIC_LIST_BOUND);
        assert!(flat < 20, "{flat}");
        let one = cost_of(
            "alert.entity_list.exists(e, e.kind == 'ip')",
            STATIC_LIST_BOUND,
        );
        assert!(one > 1_000 && one < MAX_EXPR_COST, "{one}");
        let nested = cost_of(
            "alert.entity_list.all(a, alert.entity_list.all(b, alert.entity_list.all(c, a.value != 'zz')))",
            STATIC_LIST_BOUND,
        );
        assert!(nested > MAX_EXPR_COST * 1_000, "{nested}");
        // With the lists this alert actually has, the same nesting is cheap.
        assert!(
            cost_of(
                "alert.entity_list.all(a, alert.entity_list.all(b, a.value != b.value))",
                3
            ) < 200
        );
    }

    #[test]
    fn an_accepted_expression_is_cut_before_it_walks_a_huge_step_output() {
        let expr = crate::playbook::Expr::compile(
            "steps.hunt.findings.exists(f, f.level == 'high' && f.rule != 'noise')",
        )
        .expect("cheap enough for an alert's lists");
        let alert: crate::model::Alert =
            serde_json::from_value(serde_json::json!({"id": "a", "source": "s", "title": "t"}))
                .expect("alert");
        let findings: Vec<serde_json::Value> = (0..100_000)
            .map(|i| serde_json::json!({"level": "low", "rule": format!("r{i}")}))
            .collect();
        let steps = serde_json::json!({"hunt": {"findings": findings}});
        let variables = crate::playbook::Variables::new(&alert, &steps);
        let err = expr.eval_bool(&variables).expect_err("cut");
        assert!(err.to_string().contains("too costly"), "{err}");
        let few = serde_json::json!({"hunt": {"findings": [{"level": "high", "rule": "r"}]}});
        assert!(
            expr.eval_bool(&crate::playbook::Variables::new(&alert, &few))
                .expect("runs")
        );
    }

    #[test]
    fn the_longest_list_is_found_anywhere() {
        let value = serde_json::json!({"a": [1, 2], "b": {"c": [[1, 2, 3, 4], 5]}});
        assert_eq!(longest_list(&value), 4);
    }
}
