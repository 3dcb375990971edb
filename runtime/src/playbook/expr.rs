//! CEL expressions: compiled once at validation, evaluated per run.
//!
//! The variables are `alert` and `steps`:
//! - `alert`: the alert as JSON, with `alert.entities` as a map from kind to
//!   the list of values (`alert.entities.ip[0]`) and the original list as
//!   `alert.entity_list` (`[{kind, value}]`);
//! - `steps.<id>`: each finished step's output (see [`super::StepOutput`]).
//!
//! JSON integers become CEL `int`, so `steps.risk.score >= 80` compares
//! like with like.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, Program, Value};

use super::cost::{self, MAX_EXPR_COST, STATIC_LIST_BOUND};

/// Estimated steps above which an evaluation leaves the async workers
/// (about a quarter of a millisecond of interpretation).
pub const OFFLOAD_COST: u64 = 5_000;

/// A compiled CEL expression with its source.
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<Program>,
    /// The cost with lists of [`STATIC_LIST_BOUND`] items, found at
    /// compile time. The cost only grows with list length, so an evaluation
    /// whose lists are no longer needs no estimate of its own.
    static_cost: u64,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Why an expression could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// A syntax error; `offset` is the 1-based character in the expression.
    #[error("CEL syntax error at character {offset}: {message}")]
    Syntax {
        /// 1-based character offset.
        offset: usize,
        /// What the parser said.
        message: String,
    },
    /// Evaluation failed (missing field, wrong type, ...).
    #[error("CEL evaluation of `{source_text}` failed: {message}")]
    Eval {
        /// The expression.
        source_text: String,
        /// What went wrong.
        message: String,
    },
    /// The expression would cost more steps than allowed: refused at upload
    /// (lists as long as an alert's entity list may be) or cut before it
    /// runs (with the lists of this evaluation).
    #[error(
        "CEL expression `{source_text}` is too costly: about {cost} steps with lists of {list_len} items (limit {limit}); avoid nesting comprehensions such as all/exists/map/filter"
    )]
    Cost {
        /// The expression.
        source_text: String,
        /// Its estimated steps.
        cost: u64,
        /// The list length it was estimated with.
        list_len: u64,
        /// The limit.
        limit: u64,
    },
    /// The expression gave a value of the wrong type.
    #[error("CEL expression `{source_text}` gave {found}, expected {expected}")]
    Type {
        /// The expression.
        source_text: String,
        /// What it gave.
        found: String,
        /// What was needed.
        expected: &'static str,
    },
}

/// Longest expression accepted (the parser is recursive; keep inputs sane).
pub const MAX_EXPR_CHARS: usize = 4_096;
/// Deepest bracket nesting accepted: the parser recurses per level, and a
/// stack overflow would abort the process, which `catch_unwind` cannot stop.
pub const MAX_NESTING: usize = 32;

/// The deepest nesting of (), [] and {} outside string literals.
fn nesting(source: &str) -> usize {
    let (mut depth, mut deepest, mut quote) = (0usize, 0usize, None::<char>);
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

impl Expr {
    /// The expression's syntax tree.
    pub(crate) fn ast(&self) -> &cel::common::ast::Expr {
        &self.program.expression().expr
    }

    /// Compiles `source`.
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        if source.chars().count() > MAX_EXPR_CHARS {
            return Err(ExprError::Syntax {
                offset: MAX_EXPR_CHARS,
                message: format!("expression longer than {MAX_EXPR_CHARS} characters"),
            });
        }
        if source.trim().is_empty() {
            return Err(ExprError::Syntax {
                offset: 0,
                message: "empty expression".to_owned(),
            });
        }
        // Unary chains (`!!!!x`, `----1`) recurse like brackets do.
        let unary_run = source
            .as_bytes()
            .windows(MAX_NESTING)
            .any(|w| w.iter().all(|b| matches!(b, b'!' | b'-')));
        if nesting(source) > MAX_NESTING || unary_run {
            return Err(ExprError::Syntax {
                offset: 0,
                message: format!("nested deeper than {MAX_NESTING} levels"),
            });
        }
        // The parser has been seen to panic on some inputs; a playbook must
        // never take the process down, so contain it.
        let compiled = std::panic::catch_unwind(|| Program::compile(source));
        match compiled {
            Ok(Ok(program)) => {
                let static_cost = cost::cost(&program.expression().expr, STATIC_LIST_BOUND);
                let expr = Expr {
                    source: source.to_owned(),
                    program: Arc::new(program),
                    static_cost,
                };
                expr.check_cost(STATIC_LIST_BOUND)?;
                Ok(expr)
            }
            Ok(Err(errors)) => {
                let first = errors.errors.first();
                Err(ExprError::Syntax {
                    offset: first.map_or(0, |err| usize::try_from(err.pos.1.max(0)).unwrap_or(0)),
                    message: first.map_or_else(|| errors.to_string(), |err| err.msg.clone()),
                })
            }
            Err(_) => Err(ExprError::Syntax {
                offset: 0,
                message: "the CEL parser could not handle this expression".to_owned(),
            }),
        }
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Refuses the expression if, with lists of `list_len` items, it would
    /// cost more than [`MAX_EXPR_COST`] steps.
    fn check_cost(&self, list_len: u64) -> Result<(), ExprError> {
        let estimate = self.estimate(list_len);
        if estimate > MAX_EXPR_COST {
            return Err(ExprError::Cost {
                source_text: self.source.clone(),
                cost: estimate,
                list_len,
                limit: MAX_EXPR_COST,
            });
        }
        Ok(())
    }

    fn eval(&self, variables: &Variables) -> Result<Value, ExprError> {
        self.check_cost(variables.list_len)?;
        let program = self.program.clone();
        // The standard library's functions are registered once per thread,
        // not per evaluation (building them was most of an evaluation's
        // cost); each evaluation gets a scope of its own for the variables.
        thread_local! {
            static ROOT: Context<'static, 'static> = Context::default();
        }
        let executed = ROOT.with(|root| {
            let mut context = root.new_inner_scope();
            context.add_variable_from_value("alert", variables.alert.clone());
            context.add_variable_from_value("steps", variables.steps.clone());
            let context = &context;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program.execute(context)))
        });
        match executed {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(ExprError::Eval {
                source_text: self.source.clone(),
                message: err.to_string(),
            }),
            Err(_) => Err(ExprError::Eval {
                source_text: self.source.clone(),
                message: "evaluation panicked".to_owned(),
            }),
        }
    }

    /// Whether evaluating with `variables` is costly enough to leave the
    /// async workers: above [`OFFLOAD_COST`] estimated steps.
    pub fn costly(&self, variables: &Variables) -> bool {
        // Cheap at its compile-time bound: cheap now (no walk per alert).
        if self.static_cost <= OFFLOAD_COST && variables.list_len <= STATIC_LIST_BOUND {
            return false;
        }
        cost::cost(&self.program.expression().expr, variables.list_len) > OFFLOAD_COST
    }

    /// The estimated steps with lists of `list_len` items: the compile-time
    /// figure (an upper bound) unless the lists are longer than it assumed.
    fn estimate(&self, list_len: u64) -> u64 {
        if list_len <= STATIC_LIST_BOUND {
            self.static_cost
        } else {
            cost::cost(&self.program.expression().expr, list_len)
        }
    }

    /// Evaluates to a boolean.
    pub fn eval_bool(&self, variables: &Variables) -> Result<bool, ExprError> {
        match self.eval(variables)? {
            Value::Bool(value) => Ok(value),
            other => Err(ExprError::Type {
                source_text: self.source.clone(),
                found: describe(&other),
                expected: "a bool",
            }),
        }
    }

    /// Evaluates to JSON.
    pub fn eval_json(&self, variables: &Variables) -> Result<serde_json::Value, ExprError> {
        let value = self.eval(variables)?;
        cel_to_json(&value).ok_or_else(|| ExprError::Type {
            source_text: self.source.clone(),
            found: describe(&value),
            expected: "a JSON value",
        })
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Int(i) => format!("int {i}"),
        Value::UInt(u) => format!("uint {u}"),
        Value::Float(f) => format!("double {f}"),
        Value::String(s) => format!("string {s:?}"),
        Value::List(_) => "a list".to_owned(),
        Value::Map(_) => "a map".to_owned(),
        _ => "a value".to_owned(),
    }
}

/// The variables of one evaluation.
#[derive(Debug, Clone)]
pub struct Variables {
    alert: Value,
    steps: Value,
    /// The longest list in either: what a comprehension may walk.
    list_len: u64,
}

impl Variables {
    /// Variables from the alert (JSON) and step outputs (JSON object).
    pub fn new(alert: &crate::model::Alert, steps: &serde_json::Value) -> Self {
        let mut alert_json = serde_json::to_value(alert).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(object) = &mut alert_json {
            let mut by_kind: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
            for entity in &alert.entities {
                let kind = serde_json::to_value(entity.kind)
                    .ok()
                    .and_then(|k| k.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let slot = by_kind
                    .entry(kind)
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(values) = slot {
                    values.push(serde_json::Value::String(entity.value.clone()));
                }
            }
            if let Some(list) = object.remove("entities") {
                object.insert("entity_list".to_owned(), list);
            }
            object.insert("entities".to_owned(), serde_json::Value::Object(by_kind));
        }
        Variables {
            alert: json_to_cel(&alert_json),
            steps: json_to_cel(steps),
            list_len: cost::longest_list(&alert_json).max(cost::longest_list(steps)),
        }
    }
}

/// JSON → CEL, integers as `int` where they fit.
pub fn json_to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::UInt(u),
            (_, _, Some(f)) => Value::Float(f),
            _ => Value::Null,
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// CEL → JSON (`None` for functions, durations and other non-JSON values).
pub fn cel_to_json(value: &Value) -> Option<serde_json::Value> {
    Some(match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::UInt(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(s) => serde_json::Value::String(s.as_ref().clone()),
        Value::List(items) => {
            serde_json::Value::Array(items.iter().map(cel_to_json).collect::<Option<Vec<_>>>()?)
        }
        Value::Map(map) => {
            let mut object = serde_json::Map::new();
            for (key, value) in map.map.iter() {
                let key = match key {
                    Key::String(s) => s.as_ref().clone(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                object.insert(key, cel_to_json(value)?);
            }
            serde_json::Value::Object(object)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_alert() -> crate::model::Alert {
        serde_json::from_value(serde_json::json!({
            "id": "a1", "source": "edr", "title": "t", "severity": "high", "time": 1,
            "entities": [{"kind": "ip", "value": "203.0.113.7"}, {"kind": "user", "value": "alice"}],
            "techniques": ["T1059"], "tags": ["x"], "raw": {"n": 1, "nested": {"list": [1, 2]}}
        }))
        .unwrap_or_else(|err| panic!("{err}"))
    }

    fn steps() -> serde_json::Value {
        serde_json::json!({"risk": {"score": 85, "confidence": 90, "reasons": ["r"]}, "ti": {"verdict": "malicious", "enrichments": []}})
    }

    /// Pieces playbook authors actually write, glued at random.
    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "alert",
            "alert.severity",
            "alert.entities",
            "alert.entities.ip",
            "alert.entities.ip[0]",
            "alert.raw.nested.list",
            "steps",
            "steps.risk.score",
            "steps.ti.verdict",
            "steps.missing.x",
            "==",
            "!=",
            ">=",
            "<",
            "&&",
            "||",
            "!",
            "in",
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            ",",
            ":",
            ".",
            "size(",
            "has(",
            "\"high\"",
            "'ip'",
            "80",
            "-1",
            "1.5",
            "true",
            "null",
            "?",
            "+",
            "*",
            "/",
            "%",
            "matches(",
            "startsWith(",
            ".exists(e, e == 1)",
            " ",
        ])
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}1{}", "(".repeat(2000), ")".repeat(2000));
        assert!(matches!(
            Expr::compile(&deep),
            Err(ExprError::Syntax { .. })
        ));
        let unary = format!("{}true", "!".repeat(3000));
        assert!(matches!(
            Expr::compile(&unary),
            Err(ExprError::Syntax { .. })
        ));
        assert!(Expr::compile("(((1)))").is_ok());
        assert!(Expr::compile("'((((((((((((((((((((((((((((((((((((((((' == alert.title").is_ok());
    }

    #[test]
    fn realistic_expressions_evaluate() {
        let variables = Variables::new(&sample_alert(), &steps());
        let truthy = [
            "alert.severity == \"high\"",
            "'ip' in alert.entities",
            "steps.risk.score >= 80",
            "alert.entities.ip[0] == \"203.0.113.7\"",
            "size(alert.techniques) == 1",
        ];
        for source in truthy {
            let expr = Expr::compile(source).unwrap_or_else(|err| panic!("{source}: {err}"));
            assert_eq!(expr.eval_bool(&variables), Ok(true), "{source}");
        }
        let missing = Expr::compile("steps.nope.score > 1").unwrap_or_else(|err| panic!("{err}"));
        assert!(missing.eval_bool(&variables).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, .. ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(source in ".{0,300}") {
            if let Ok(expr) = Expr::compile(&source) {
                let _ = expr.eval_json(&Variables::new(&sample_alert(), &steps()));
            }
        }

        #[test]
        fn glued_tokens_never_panic(tokens in prop::collection::vec(token(), 1..24)) {
            let source = tokens.concat();
            if let Ok(expr) = Expr::compile(&source) {
                let variables = Variables::new(&sample_alert(), &steps());
                let _ = expr.eval_bool(&variables);
                let _ = expr.eval_json(&variables);
            }
        }
    }
}
