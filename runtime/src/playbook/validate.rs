//! Validation: the YAML document parsed with spans, then every problem
//! collected with its line, column and a hint (never only the first), then
//! the playbook built only when there were none.

#[allow(unused_imports)]
use super::*;

struct Check<'a> {
    text: &'a str,
    issues: Vec<Issue>,
}

impl Check<'_> {
    fn at<T>(
        &mut self,
        spanned: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.issues.push(Issue {
            line: usize::try_from(spanned.referenced.line()).ok(),
            column: usize::try_from(spanned.referenced.column()).ok(),
            field: field.into(),
            message: message.into(),
            hint,
        });
    }

    /// Compiles `spanned` and checks the step outputs it reads when it is
    /// evaluated for step `reader` (`None`: before any step runs). The
    /// expression is kept (for later checks) even when a read is wrong:
    /// the issue is recorded and the playbook refused anyway.
    fn expr_reading(
        &mut self,
        spanned: &Spanned<String>,
        field: &str,
        reader: Option<&str>,
        shapes: &refs::StepShapes,
    ) -> Option<Expr> {
        let expr = self.expr(spanned, field)?;
        for (message, hint) in refs::problems(expr.ast(), reader, shapes) {
            self.at(spanned, field, message, hint);
        }
        Some(expr)
    }

    fn expr(&mut self, spanned: &Spanned<String>, field: &str) -> Option<Expr> {
        match Expr::compile(&spanned.value) {
            Ok(expr) => Some(expr),
            Err(err) => {
                let hint = Some(
                    "CEL syntax: https://cel.dev — e.g. 'alert.severity == \"high\"'".to_owned(),
                );
                self.at(spanned, field, err.to_string(), hint);
                // Point at the character the parser complained about: the
                // scalar's column, past an opening quote, plus the offset.
                if let (ExprError::Syntax { offset, .. }, Some(issue)) =
                    (&err, self.issues.last_mut())
                {
                    let line = issue
                        .line
                        .and_then(|line| self.text.lines().nth(line.saturating_sub(1)));
                    let quoted = issue.column.zip(line).is_some_and(|(column, line)| {
                        matches!(line.chars().nth(column.saturating_sub(1)), Some('"' | '\''))
                    });
                    issue.column = issue
                        .column
                        .map(|column| column + usize::from(quoted) + offset.saturating_sub(1));
                }
                None
            }
        }
    }

    fn duration(&mut self, spanned: &Spanned<String>, field: &str) -> Option<Duration> {
        match humantime::parse_duration(spanned.value.trim()) {
            Ok(duration) if !duration.is_zero() => Some(duration),
            Ok(_) => {
                self.at(spanned, field, "must be longer than zero", None);
                None
            }
            Err(err) => {
                self.at(
                    spanned,
                    field,
                    format!("`{}` is not a duration: {err}", spanned.value),
                    Some("write e.g. 500ms, 30s, 15m, 2h".to_owned()),
                );
                None
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn parse_rate(text: &str) -> Option<RateLimit> {
    let (count, per) = text.trim().split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|c| *c > 0)?;
    let per = per.trim();
    let per = match per {
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        other => humantime::parse_duration(other)
            .ok()
            .filter(|d| !d.is_zero())?,
    };
    (per <= MAX_RATE_WINDOW).then_some(RateLimit { count, per })
}

/// Parses, validates and compiles a playbook. `plugins` says which plugin
/// names exist and their kinds.
pub fn parse(
    source_name: &str,
    text: &str,
    plugins: &dyn PluginCatalog,
) -> Result<Playbook, PlaybookError> {
    let syntax =
        |line: Option<usize>, column: Option<usize>, message: String| PlaybookError::Syntax {
            source_name: source_name.to_owned(),
            issue: Box::new(Issue {
                line,
                column,
                field: "playbook".to_owned(),
                message,
                hint: None,
            }),
        };
    if text.len() > MAX_PLAYBOOK_BYTES {
        return Err(syntax(
            None,
            None,
            format!(
                "playbook is {} bytes; the limit is {MAX_PLAYBOOK_BYTES}",
                text.len()
            ),
        ));
    }
    let raw: RawPlaybook = serde_saphyr::from_str(text).map_err(|err| {
        let location = err.location();
        let line = location
            .and_then(|l| usize::try_from(l.line()).ok())
            .filter(|l| *l > 0);
        let column = location
            .and_then(|l| usize::try_from(l.column()).ok())
            .filter(|c| *c > 0);
        // The error's Display may repeat the location and quote the source; keep its first line.
        let message = err
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .to_owned();
        syntax(line, column, message)
    })?;
    let mut check = Check {
        text,
        issues: Vec::new(),
    };

    if !valid_name(&raw.name.value) {
        check.at(
            &raw.name,
            "name",
            format!("`{}` must be 1-64 characters of [a-z0-9_-]", raw.name.value),
            None,
        );
    }
    // What each step is, for checking the step outputs expressions read.
    let shapes: refs::StepShapes = raw
        .steps
        .value
        .iter()
        .map(|step| {
            let step = &step.value;
            let kinds: Vec<StepKind> = [
                (StepKind::Enrich, step.enrich.is_some()),
                (StepKind::Score, step.score.is_some()),
                (StepKind::Respond, step.respond.is_some()),
                (StepKind::Hunt, step.hunt.is_some()),
            ]
            .into_iter()
            .filter_map(|(kind, named)| named.then_some(kind))
            .collect();
            let kind = match kinds.as_slice() {
                [kind] => Some(*kind),
                _ => None,
            };
            let needs = step.needs.iter().map(|need| need.value.clone()).collect();
            (step.id.value.clone(), (kind, needs))
        })
        .collect();
    let trigger = check.expr_reading(&raw.trigger.value.alert, "trigger.alert", None, &shapes);
    let mode = match &raw.mode {
        None => Some(Mode::Supervised),
        Some(mode) => match mode.value.as_str() {
            "autonomous" => Some(Mode::Autonomous),
            "supervised" => Some(Mode::Supervised),
            "dry-run" | "dry_run" => Some(Mode::DryRun),
            other => {
                check.at(
                    mode,
                    "mode",
                    format!("`{other}` is not a mode"),
                    Some("one of autonomous, supervised, dry-run".to_owned()),
                );
                None
            }
        },
    };
    let dedup = raw.dedup.as_ref().and_then(|dedup| {
        if dedup.value.key.is_empty() {
            check.at(dedup, "dedup.key", "needs at least one expression", None);
        }
        let keys: Vec<Option<Expr>> = dedup
            .value
            .key
            .iter()
            .enumerate()
            .map(|(i, key)| check.expr_reading(key, &format!("dedup.key[{i}]"), None, &shapes))
            .collect();
        let window = check.duration(&dedup.value.window, "dedup.window");
        let keys: Option<Vec<Expr>> = keys.into_iter().collect();
        Some(Dedup {
            key: keys?,
            window: window?,
        })
    });

    let mut guardrails = Guardrails::default();
    if let Some(raw_guardrails) = &raw.guardrails {
        for asset in &raw_guardrails.value.protected_assets {
            let value = asset.value.trim();
            if value.is_empty() || value == "tag:" {
                check.at(asset, "guardrails.protected_assets", "empty entry", None);
            } else if value.contains('/') && value.parse::<ipnet::IpNet>().is_err() {
                check.at(
                    asset,
                    "guardrails.protected_assets",
                    format!("`{value}` looks like a CIDR range but is not one"),
                    None,
                );
            } else {
                guardrails.protected_assets.push(value.to_owned());
            }
        }
        for (action, rate) in &raw_guardrails.value.rate_limits {
            match parse_rate(&rate.value) {
                Some(limit) => {
                    guardrails.rate_limits.insert(action.clone(), limit);
                }
                None => check.at(
                    rate,
                    format!("guardrails.rate_limits.{action}"),
                    format!("`{}` is not a rate", rate.value),
                    Some("write COUNT/PERIOD with a period of at most 31 days, e.g. 5/h, 10/15m, 100/d".to_owned()),
                ),
            }
        }
        if let Some(max) = &raw_guardrails.value.max_targets_per_run {
            if max.value == 0 {
                check.at(
                    max,
                    "guardrails.max_targets_per_run",
                    "must be at least 1",
                    None,
                );
            }
            guardrails.max_targets_per_run = Some(max.value);
        }
    }

    if raw.steps.value.is_empty() {
        check.at(
            &raw.steps,
            "steps",
            "a playbook needs at least one step",
            None,
        );
    }
    if raw.steps.value.len() > MAX_STEPS {
        check.at(
            &raw.steps,
            "steps",
            format!("{} steps; at most {MAX_STEPS}", raw.steps.value.len()),
            None,
        );
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, step) in raw.steps.value.iter().enumerate() {
        let id = &step.value.id;
        if !valid_name(&id.value) {
            check.at(
                id,
                format!("steps[{index}].id"),
                format!("`{}` must be 1-64 characters of [a-z0-9_-]", id.value),
                None,
            );
        } else if seen.insert(id.value.clone(), index).is_some() {
            check.at(
                id,
                format!("steps[{index}].id"),
                format!("`{}` is used by an earlier step", id.value),
                None,
            );
        }
    }
    let mut steps = Vec::new();
    for (index, spanned_step) in raw.steps.value.iter().enumerate() {
        let step = &spanned_step.value;
        let field = |name: &str| format!("steps[{index}].{name}");
        let chosen: Vec<(StepKind, &Spanned<String>)> = [
            (StepKind::Enrich, &step.enrich),
            (StepKind::Score, &step.score),
            (StepKind::Respond, &step.respond),
            (StepKind::Hunt, &step.hunt),
        ]
        .into_iter()
        .filter_map(|(kind, plugin)| plugin.as_ref().map(|plugin| (kind, plugin)))
        .collect();
        let (kind, plugin) = match chosen.as_slice() {
            [(kind, plugin)] => (*kind, *plugin),
            [] => {
                check.at(
                    spanned_step,
                    format!("steps[{index}]"),
                    "names no plugin",
                    Some(
                        "add one of enrich:, score:, respond:, hunt: with a plugin name".to_owned(),
                    ),
                );
                continue;
            }
            _ => {
                check.at(
                    spanned_step,
                    format!("steps[{index}]"),
                    "names more than one of enrich/score/respond/hunt",
                    Some("split it into one step per plugin".to_owned()),
                );
                continue;
            }
        };
        match plugins.kind_of(&plugin.value) {
            None => check.at(
                plugin,
                field(step_verb(kind)),
                format!("unknown plugin `{}`", plugin.value),
                Some("upload the plugin first, or check the name".to_owned()),
            ),
            Some(actual) if actual != kind.plugin_kind() => check.at(
                plugin,
                field(step_verb(kind)),
                format!(
                    "plugin `{}` is a {actual}, not a {}",
                    plugin.value,
                    kind.plugin_kind()
                ),
                None,
            ),
            Some(_) => {}
        }
        for need in &step.needs {
            match seen.get(&need.value) {
                None => {
                    let known: Vec<&str> = seen.keys().map(String::as_str).collect();
                    check.at(
                        need,
                        field("needs"),
                        format!("unknown step `{}`", need.value),
                        Some(format!("steps are: {}", known.join(", "))),
                    );
                }
                Some(other) if *other == index => {
                    check.at(need, field("needs"), "a step cannot need itself", None)
                }
                Some(_) => {}
            }
        }
        let reader = Some(step.id.value.as_str());
        let when = step
            .when
            .as_ref()
            .and_then(|when| check.expr_reading(when, &field("when"), reader, &shapes));
        let target = step
            .target
            .as_ref()
            .and_then(|target| check.expr_reading(target, &field("target"), reader, &shapes));
        if matches!(kind, StepKind::Enrich | StepKind::Score) && step.with.is_some() {
            check.at(
                spanned_step,
                field("with"),
                format!("{} steps take no parameters", step_verb(kind)),
                Some("only respond and hunt steps take `with:`".to_owned()),
            );
        }
        if kind == StepKind::Respond && step.target.is_none() {
            check.at(
                spanned_step,
                field("target"),
                "a respond step needs a target",
                Some("e.g. target: 'alert.entities.ip[0]'".to_owned()),
            );
        }
        if kind != StepKind::Respond {
            if let Some(target) = &step.target {
                check.at(
                    target,
                    field("target"),
                    "only respond steps take a target",
                    None,
                );
            }
            if let Some(guard) = &step.guard {
                check.at(
                    guard,
                    field("guard"),
                    "only respond steps take a guard",
                    None,
                );
            }
        }
        let timeout = step
            .timeout
            .as_ref()
            .map_or(Some(DEFAULT_STEP_TIMEOUT), |t| {
                check.duration(t, &field("timeout"))
            });
        let on_error = match &step.on_error {
            None => Some(OnError::Fail),
            Some(policy) => parse_on_error(&mut check, policy, &field("on_error")),
        };
        let mut guard = Guard::default();
        if let Some(raw_guard) = &step.guard {
            if let Some(min) = &raw_guard.value.min_confidence {
                if min.value > 100 {
                    check.at(
                        min,
                        field("guard.min_confidence"),
                        format!("{} is above 100", min.value),
                        None,
                    );
                }
                guard.min_confidence = u8::try_from(min.value.min(100)).unwrap_or(100);
            }
            if let Some(approvers) = &raw_guard.value.approvers {
                if approvers.value == 0 || approvers.value > 10 {
                    check.at(
                        approvers,
                        field("guard.approvers"),
                        "must be 1 to 10",
                        Some("approvals fail closed: at least one human must approve".to_owned()),
                    );
                }
                guard.approvers = approvers.value.clamp(1, 10);
            }
            guard.external_target = raw_guard.value.external_target.unwrap_or(false);
            if let Some(timeout) = &raw_guard.value.approval_timeout
                && let Some(duration) = check.duration(timeout, &field("guard.approval_timeout"))
            {
                guard.approval_timeout = duration;
            }
        }
        let with = step
            .with
            .clone()
            .unwrap_or(serde_json::Value::Object(serde_json::Map::new()));
        if !with.is_object() {
            check.at(
                spanned_step,
                field("with"),
                "must be a mapping of parameters",
                None,
            );
        }
        let action = step
            .action
            .as_ref()
            .map_or_else(|| plugin.value.clone(), |action| action.value.clone());
        // Only steps whose every part compiled go on to the cycle check.
        let compiled =
            step.when.is_some() == when.is_some() && step.target.is_some() == target.is_some();
        if let (Some(timeout), Some(on_error), true) = (timeout, on_error, compiled) {
            steps.push(Step {
                id: step.id.value.clone(),
                kind,
                plugin: plugin.value.clone(),
                needs: step.needs.iter().map(|need| need.value.clone()).collect(),
                when,
                with,
                target,
                action,
                timeout,
                on_error,
                guard,
            });
        }
    }

    // Cycles: Kahn's algorithm over the steps that parsed.
    let order = topological_order(&steps);
    if order.is_none() {
        let in_cycle = cycle_members(&steps);
        for (index, spanned_step) in raw.steps.value.iter().enumerate() {
            if in_cycle.contains(&spanned_step.value.id.value) {
                check.at(
                    &spanned_step.value.id,
                    format!("steps[{index}].needs"),
                    format!(
                        "step `{}` is part of a dependency cycle",
                        spanned_step.value.id.value
                    ),
                    Some("remove one of the `needs` that close the loop".to_owned()),
                );
            }
        }
    }

    match (check.issues.is_empty(), trigger, mode, order) {
        (true, Some(trigger), Some(mode), Some(order)) => {
            let by_id: HashMap<String, Step> = steps
                .into_iter()
                .map(|step| (step.id.clone(), step))
                .collect();
            let mut by_id = by_id;
            let steps = order
                .into_iter()
                .filter_map(|id| by_id.remove(&id))
                .collect();
            Ok(Playbook {
                name: raw.name.value,
                version: raw.version.map_or(1, |v| v.value),
                description: raw.description,
                trigger,
                mode,
                dedup: if raw.dedup.is_some() { dedup } else { None },
                steps,
                guardrails,
                sha256: hex::encode(Sha256::digest(text.as_bytes())),
                source: text.to_owned(),
            })
        }
        _ => Err(PlaybookError::Invalid {
            source_name: source_name.to_owned(),
            issues: check.issues,
        }),
    }
}

fn step_verb(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Enrich => "enrich",
        StepKind::Score => "score",
        StepKind::Respond => "respond",
        StepKind::Hunt => "hunt",
    }
}

fn parse_on_error(
    check: &mut Check<'_>,
    policy: &Spanned<serde_json::Value>,
    field: &str,
) -> Option<OnError> {
    let hint = Some("one of fail, continue, or {retry: {max: 3, backoff: 2s}}".to_owned());
    match &policy.value {
        serde_json::Value::String(text) if text == "fail" => Some(OnError::Fail),
        serde_json::Value::String(text) if text == "continue" => Some(OnError::Continue),
        serde_json::Value::Object(object) if object.len() == 1 && object.contains_key("retry") => {
            let retry = object.get("retry").and_then(serde_json::Value::as_object);
            let max = retry
                .and_then(|r| r.get("max"))
                .and_then(serde_json::Value::as_u64);
            let backoff = retry
                .and_then(|r| r.get("backoff"))
                .and_then(serde_json::Value::as_str)
                .map_or(Some(Duration::from_secs(1)), |text| {
                    humantime::parse_duration(text).ok()
                });
            match (max, backoff) {
                (Some(max), Some(backoff)) if (1..=10).contains(&max) => Some(OnError::Retry {
                    max: max as u32,
                    backoff,
                }),
                _ => {
                    check.at(
                        policy,
                        field,
                        "retry needs max (1-10) and an optional backoff duration",
                        hint,
                    );
                    None
                }
            }
        }
        other => {
            check.at(
                policy,
                field,
                format!("`{other}` is not an error policy"),
                hint,
            );
            None
        }
    }
}

fn topological_order(steps: &[Step]) -> Option<Vec<String>> {
    let ids: BTreeSet<&str> = steps.iter().map(|step| step.id.as_str()).collect();
    let mut indegree: BTreeMap<&str, usize> = steps
        .iter()
        .map(|step| {
            (
                step.id.as_str(),
                step.needs
                    .iter()
                    .filter(|n| ids.contains(n.as_str()))
                    .count(),
            )
        })
        .collect();
    let mut ready: Vec<&str> = steps
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| indegree.get(id) == Some(&0))
        .collect();
    let mut order = Vec::new();
    while let Some(id) = ready.first().copied() {
        ready.remove(0);
        order.push(id.to_owned());
        for step in steps {
            if step.needs.iter().any(|need| need == id)
                && let Some(degree) = indegree.get_mut(step.id.as_str())
            {
                *degree -= 1;
                if *degree == 0 {
                    ready.push(step.id.as_str());
                }
            }
        }
    }
    (order.len() == steps.len()).then_some(order)
}

fn cycle_members(steps: &[Step]) -> BTreeSet<String> {
    // Steps not placed by the topological sort are in or behind a cycle;
    // keep those that can reach themselves.
    let needs: HashMap<&str, Vec<&str>> = steps
        .iter()
        .map(|s| (s.id.as_str(), s.needs.iter().map(String::as_str).collect()))
        .collect();
    let mut members = BTreeSet::new();
    for step in steps {
        let mut stack: Vec<&str> = needs.get(step.id.as_str()).cloned().unwrap_or_default();
        let mut visited = BTreeSet::new();
        while let Some(next) = stack.pop() {
            if next == step.id {
                members.insert(step.id.clone());
                break;
            }
            if visited.insert(next) {
                stack.extend(needs.get(next).cloned().unwrap_or_default());
            }
        }
    }
    members
}
