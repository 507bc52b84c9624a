//! `infra/template.yaml` and the workspace agree: every function crate is a
//! function in the template and nothing else is; every variable a function
//! reads is set for it, and nothing is set that no code reads (a typo would
//! be ignored silently); the routes are the emulator's; the queues' redrive
//! and visibility fit the code's limits; secrets come from Secrets Manager or
//! SSM, never from a template default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;
use switchboard::auth::AUTH_VARIABLES;
use switchboard::config::{CONFIG_VARIABLES, LOG_VARIABLES};
use switchboard::secrets::SECRET_VARIABLES;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("infra/template.yaml is YAML")
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

fn keys(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn resources_of<'a>(t: &'a Value, kind: &str) -> BTreeMap<String, &'a Value> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap().to_owned(), r))
        .collect()
}

/// The function crates of the workspace: `functions/<name>`.
fn function_crates() -> BTreeSet<String> {
    let manifest: String = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .filter_map(|l| l.trim().trim_matches(|c| c == '"' || c == ',').strip_prefix("functions/").map(str::to_owned))
        .collect()
}

/// Every environment variable the code reads.
fn every_variable() -> impl Iterator<Item = &'static str> {
    CONFIG_VARIABLES
        .iter()
        .chain(AUTH_VARIABLES)
        .chain(LOG_VARIABLES)
        .copied()
        .chain(SECRET_VARIABLES.iter().map(|(arn, _)| *arn))
}

fn number(v: &Value) -> u64 {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not a number: {v:?}"))
}

#[test]
fn every_function_crate_is_a_function_in_the_template_and_nothing_else_is() {
    let t = template();
    let functions = resources_of(&t, "AWS::Serverless::Function");
    let binaries: BTreeSet<String> = functions
        .values()
        .map(|f| {
            assert_eq!(get(f, &["Metadata", "BuildMethod"]).and_then(Value::as_str), Some("rust-cargolambda"));
            get(f, &["Metadata", "BuildProperties", "Binary"]).and_then(Value::as_str).unwrap().to_owned()
        })
        .collect();
    assert_eq!(binaries, function_crates());
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    assert_eq!(globals["Handler"].as_str(), Some("bootstrap"));
}

#[test]
fn every_variable_the_code_reads_is_set_and_nothing_else() {
    let t = template();
    let known: BTreeSet<&str> = every_variable().collect();
    let global = keys(get(&t, &["Globals", "Function", "Environment", "Variables"]));
    for (name, f) in resources_of(&t, "AWS::Serverless::Function") {
        let binary = get(f, &["Metadata", "BuildProperties", "Binary"]).and_then(Value::as_str).unwrap();
        let mut env = global.clone();
        env.extend(keys(get(f, &["Properties", "Environment", "Variables"])));
        for var in &env {
            assert!(known.contains(var.as_str()), "{name} sets {var}, which no code reads");
        }
        let dir = root().join("functions").join(binary).join("src");
        let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
        let lib = std::fs::read_to_string(dir.join("lib.rs")).unwrap();
        let mut needed: Vec<&str> = Vec::new();
        if main.contains("Context::for_function") {
            // Redis always; every publish may queue webhook deliveries and chunks.
            needed.extend(["REDIS_URL", "WEBHOOK_QUEUE_URL", "EVENTS_QUEUE_URL"]);
        }
        // What dead-letters webhook deliveries: the queue's consumer
        // (`webhook_delivery::deliver`) or a direct use of the queue.
        if lib.contains("webhook_dlq()") || lib.contains("webhook_delivery::{Done, Received, deliver}") {
            needed.push("WEBHOOK_DLQ_URL");
        }
        if main.contains("AuthConfig::from_lookup") || main.contains("api::router") {
            needed.extend(["JWT_SECRET_ARN", "JWT_PUBLIC_KEY"]);
        }
        assert!(!needed.is_empty(), "{binary}: the test knows how {binary} reads its configuration");
        for var in needed {
            assert!(env.contains(var), "{name} ({binary}) reads {var} but the template does not set it");
        }
    }
}

#[test]
fn secrets_come_from_secrets_manager_or_ssm() {
    let t = template();
    for (name, p) in t["Parameters"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if ["Secret", "Password", "Token", "PublicKey"].iter().any(|w| name.contains(w)) {
            let default = p.get("Default").and_then(Value::as_str).unwrap_or("");
            assert!(default.is_empty(), "parameter {name} has a default; secrets are referenced, never given");
        }
    }
    let text = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    for line in text.lines().filter(|l| l.trim_start().starts_with("AuthToken:")) {
        assert!(line.contains("resolve:"), "the cache's AuthToken is resolved at deploy time: {line}");
    }
    // Issue 13, point 6: no secret value in any function's environment
    // (lambda:GetFunctionConfiguration would show it): only ARNs, read at
    // cold start by the functions whose role may read them.
    let global = get(&t, &["Globals", "Function", "Environment", "Variables"]).unwrap();
    let functions = resources_of(&t, "AWS::Serverless::Function");
    let envs = std::iter::once(("Globals", global)).chain(
        functions.iter().filter_map(|(n, f)| Some((n.as_str(), get(f, &["Properties", "Environment", "Variables"])?))),
    );
    for (name, env) in envs {
        let shown = format!("{env:?}");
        assert!(!shown.contains("resolve:secretsmanager"), "{name}: a secret resolved into the environment: {shown}");
        for var in ["JWT_SECRET", "REDIS_PASSWORD"] {
            assert!(env.get(var).is_none(), "{name} sets {var}; set {var}_ARN instead");
        }
    }
    let authorizer = functions.values().find(|f| format!("{:?}", f["Metadata"]).contains("ws-authorizer")).unwrap();
    let redis = get(authorizer, &["Properties", "Environment", "Variables", "REDIS_PASSWORD_ARN"]).unwrap();
    assert!(format!("{redis:?}").contains("AWS::NoValue"), "the authorizer gets no Redis password: {redis:?}");
    assert!(!format!("{:?}", authorizer["Properties"]["Policies"]).contains("RedisSecretPolicy"));
}

#[test]
fn the_websocket_routes_are_the_emulators() {
    let t = template();
    let api = resources_of(&t, "AWS::ApiGatewayV2::Api");
    let api = api.values().next().unwrap();
    assert_eq!(get(api, &["Properties", "ProtocolType"]).and_then(Value::as_str), Some("WEBSOCKET"));
    assert_eq!(
        get(api, &["Properties", "RouteSelectionExpression"]).and_then(Value::as_str),
        Some(switchboard_local::Settings::default().route_selection.as_str())
    );
    let routes = resources_of(&t, "AWS::ApiGatewayV2::Route");
    let keys: BTreeSet<&str> = routes.values().map(|r| r["Properties"]["RouteKey"].as_str().unwrap()).collect();
    let mut expected: BTreeSet<&str> = ["$connect", "$disconnect", "$default"].into();
    expected.extend(switchboard_local::WEBSOCKET_ROUTES);
    assert_eq!(keys, expected);
    let responses = resources_of(&t, "AWS::ApiGatewayV2::RouteResponse");
    for (name, route) in &routes {
        let key = route["Properties"]["RouteKey"].as_str().unwrap();
        let two_way = responses.values().any(
            |r| matches!(&r["Properties"]["RouteId"], Value::Tagged(tag) if tag.value.as_str() == Some(name.as_str())),
        );
        assert_eq!(
            two_way,
            !matches!(key, "$connect" | "$disconnect"),
            "{key}: a route response so replies reach the client"
        );
    }
    let connect = routes.values().find(|r| r["Properties"]["RouteKey"].as_str() == Some("$connect")).unwrap();
    assert_eq!(connect["Properties"]["AuthorizationType"].as_str(), Some("CUSTOM"));
    let deployment = resources_of(&t, "AWS::ApiGatewayV2::Deployment");
    let depends: BTreeSet<&str> = deployment.values().next().unwrap()["DependsOn"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(depends, routes.keys().map(String::as_str).collect(), "the deployment waits for every route");
}

#[test]
fn queues_fit_the_retry_limits_and_report_partial_failures() {
    use switchboard_local::queues as emu;
    let t = template();
    let r = &t["Resources"];
    let webhook_queue = &r["WebhookQueue"]["Properties"];
    let max_receives = number(&webhook_queue["RedrivePolicy"]["maxReceiveCount"]);
    assert_eq!(max_receives, u64::from(switchboard::webhook::MAX_RETRY_COUNT) + 2, "every allowed attempt, plus one");
    assert_eq!(max_receives, u64::from(emu::WEBHOOK_MAX_RECEIVES), "the emulator's queue agrees");
    let timeout = number(&r["WebhookFunction"]["Properties"]["Timeout"]);
    let visibility = number(&webhook_queue["VisibilityTimeout"]);
    assert!(visibility >= 6 * timeout, "visibility {visibility} s >= 6 x the function's {timeout} s");
    assert_eq!(visibility, emu::WEBHOOK_VISIBILITY_SECS);
    let whole_schedule: u64 = switchboard::webhook::RetrySchedule::default().delays.iter().map(|d| d.as_secs()).sum();
    assert!(
        number(&webhook_queue["MessageRetentionPeriod"]) > whole_schedule * 6 / 5,
        "retention outlasts the schedule"
    );

    let events = &r["EventsQueue"]["Properties"];
    assert_eq!(number(&events["RedrivePolicy"]["maxReceiveCount"]), u64::from(emu::EVENTS_MAX_RECEIVES));
    let fanout_timeout = number(&r["FanoutFunction"]["Properties"]["Timeout"]);
    assert!(number(&events["VisibilityTimeout"]) >= 6 * fanout_timeout);
    assert_eq!(number(&events["VisibilityTimeout"]), emu::EVENTS_VISIBILITY_SECS);

    for (function, queue) in [("WebhookFunction", "WebhookQueue"), ("FanoutFunction", "EventsQueue")] {
        let events = r[function]["Properties"]["Events"].as_mapping().unwrap();
        let sqs: Vec<&Value> = events.values().filter(|e| e["Type"].as_str() == Some("SQS")).collect();
        assert_eq!(sqs.len(), 1, "{function} has one SQS trigger");
        let props = &sqs[0]["Properties"];
        assert_eq!(props["FunctionResponseTypes"][0].as_str(), Some("ReportBatchItemFailures"));
        assert!(
            matches!(&props["Queue"], Value::Tagged(t) if t.value.as_sequence().is_some_and(|s| s[0].as_str() == Some(queue))
            || t.value.as_str().is_some_and(|s| s.starts_with(queue)))
        );
    }
}

#[test]
fn connections_may_be_managed_on_this_api_only() {
    let t = template();
    let text = serde_yaml_ng::to_string(&t["Resources"]["PublishPolicy"]).unwrap();
    assert!(text.contains("execute-api:ManageConnections"));
    assert!(text.contains("${WebSocketApi}/${Stage}/*/@connections/*"), "scoped to this API's stage: {text}");
    let all = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    assert!(!all.contains("Resource: \"*\"") && !all.contains("Resource: '*'"), "no wildcard resources");
}

/// Issue 14, point 2: functions share the `switchboard` library, never
/// each other (the api function used to link the webhook function).
#[test]
fn no_function_crate_depends_on_another() {
    let crates = function_crates();
    for name in &crates {
        let manifest = std::fs::read_to_string(root().join("functions").join(name).join("Cargo.toml")).unwrap();
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or("").split("\n[").next().unwrap_or("");
        for line in deps.lines() {
            let dep = line.split(['=', '.']).next().unwrap_or("").trim();
            assert!(!crates.contains(dep) || dep.is_empty(), "functions/{name} depends on the function crate {dep}");
        }
    }
}

/// Issue 14, point 11: every dependency a crate declares is named in its
/// code (what `cargo machete` checks, without installing it): a library
/// that is only linked costs build time and supply-chain surface for nothing.
#[test]
fn every_declared_dependency_is_used() {
    let mut dirs: Vec<PathBuf> = ["shared", "local", "tests", "bench"].iter().map(|d| root().join(d)).collect();
    dirs.extend(function_crates().iter().map(|c| root().join("functions").join(c)));
    let mut unused = Vec::new();
    for dir in dirs {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let mut code = String::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() && !matches!(name.as_str(), "target" | "node_modules" | ".tools") {
                    stack.push(path);
                } else if name.ends_with(".rs") {
                    code.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        for section in
            manifest.split("\n[").filter(|s| s.starts_with("dependencies]") || s.starts_with("dev-dependencies]"))
        {
            for line in section.lines().skip(1) {
                let dep = line.split(['=', '.']).next().unwrap_or("").trim();
                if dep.is_empty() || dep.starts_with('#') {
                    continue;
                }
                // A package whose library is named otherwise.
                let ident = match dep {
                    "md-5" => "md5".to_owned(),
                    other => other.replace('-', "_"),
                };
                let used = [
                    format!("{ident}::"),
                    format!("use {ident}"),
                    format!("{ident}!"),
                    format!("extern crate {ident}"),
                ]
                .iter()
                .any(|p| code.contains(p.as_str()));
                if !used {
                    unused.push(format!("{}: {dep}", dir.file_name().unwrap().to_string_lossy()));
                }
            }
        }
    }
    assert!(unused.is_empty(), "declared but never used: {unused:?}");
}

/// Issue 14, point 13: one key table (the README's), and every key that
/// `Keys` documents (`/// \`{p}:<kind>...`) is in it.
#[test]
fn every_redis_key_is_in_the_readme() {
    let keys = std::fs::read_to_string(root().join("shared/src/store/keys.rs")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let layout = readme.split("## Redis layout").nth(1).unwrap().split("\n## ").next().unwrap();
    let kinds: BTreeSet<&str> = keys
        .lines()
        .filter_map(|l| l.trim().strip_prefix("/// `{p}:"))
        .map(|rest| rest.split(|c: char| !(c.is_ascii_lowercase() || c == '_')).next().unwrap())
        .filter(|kind| !kind.is_empty())
        .collect();
    assert!(kinds.len() >= 15, "{kinds:?}");
    for kind in kinds {
        let listed = [':', ' '].iter().any(|end| layout.contains(&format!("callcenter:{kind}{end}")));
        assert!(listed, "key {kind} is not in the README's Redis layout");
    }
}

/// Issue 14, point 8: every variable the code reads is in the README's
/// configuration table, so an operator can find each limit there.
#[test]
fn every_variable_is_in_the_readmes_configuration_table() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let table = readme.split("## Configuration").nth(1).unwrap().split("\n## ").next().unwrap();
    let missing: Vec<&str> = every_variable().filter(|v| !table.contains(&format!("`{v}`"))).collect();
    assert!(missing.is_empty(), "not in the README's configuration table: {missing:?}");
}

/// Issue 17, point 1: alarms on both dead-letter queues, on every
/// function's errors and throttles, and on the webhook failure rate from
/// the functions' own EMF metrics (by the names the code writes), each
/// notifying the optional topic; and a dashboard.
#[test]
fn the_template_alarms_on_dead_letters_function_errors_throttles_and_webhook_failures() {
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    let text = |v: &Value| serde_yaml_ng::to_string(v).unwrap();
    for (alarm, queue) in
        [("WebhookDeadLetterAlarm", "WebhookDeadLetterQueue"), ("EventsDeadLetterAlarm", "EventsDeadLetterQueue")]
    {
        let props = &alarms[alarm]["Properties"];
        assert_eq!(props["MetricName"].as_str(), Some("ApproximateNumberOfMessagesVisible"), "{alarm}");
        assert!(text(&props["Dimensions"]).contains(&format!("{queue}.QueueName")), "{alarm} watches {queue}");
    }
    let functions = resources_of(&t, "AWS::Serverless::Function");
    assert_eq!(functions.len(), function_crates().len());
    for (alarm, metric) in [("FunctionErrorsAlarm", "Errors"), ("FunctionThrottlesAlarm", "Throttles")] {
        let metrics = text(&alarms[alarm]["Properties"]["Metrics"]);
        for function in functions.keys() {
            assert!(metrics.contains(&format!("!Ref {function}")), "{alarm} leaves out {function}");
        }
        assert_eq!(metrics.matches(&format!("MetricName: {metric}")).count(), functions.len(), "{alarm}");
    }
    let rate = text(&alarms["WebhookFailureRateAlarm"]["Properties"]["Metrics"]);
    assert!(rate.contains(switchboard::metrics::WEBHOOK_ATTEMPTS) && rate.contains(switchboard::metrics::NAMESPACE));
    for outcome in ["delivered", "failed", "dead", "gone"] {
        assert!(rate.contains(&format!("Value: {outcome}")), "the failure rate counts {outcome}");
    }
    for (name, alarm) in &alarms {
        let actions = text(&alarm["Properties"]["AlarmActions"]);
        assert!(actions.contains("HasAlarmTopic") && actions.contains("AlarmTopicArn"), "{name} notifies the topic");
    }
    let dashboards = resources_of(&t, "AWS::CloudWatch::Dashboard");
    let body = text(&dashboards["Dashboard"]["Properties"]["DashboardBody"]);
    // Every metric the functions write (the current connections are the emulator's own).
    for (name, _, _) in
        switchboard::metrics::ALL.iter().filter(|(n, _, _)| *n != switchboard::metrics::CONNECTIONS_CURRENT)
    {
        assert!(body.contains(name), "the dashboard shows {name}");
    }
}

/// The image's dependency layer stands in every workspace member: a member
/// it does not copy breaks the workspace inside `docker build`.
#[test]
fn the_image_copies_every_workspace_member() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = manifest.split("members = [").nth(1).and_then(|m| m.split(']').next()).expect("a members list");
    let dockerfile = std::fs::read_to_string(root().join("infra/docker/Dockerfile")).unwrap();
    let stand_ins =
        dockerfile.lines().find(|l| l.trim_start().starts_with("RUN for crate in")).expect("the stand-ins loop");
    for member in members.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()) {
        assert!(
            dockerfile.contains(&format!("COPY {member}/Cargo.toml {member}/")),
            "the Dockerfile does not copy {member}'s manifest"
        );
        let covered = stand_ins
            .split_whitespace()
            .map(|w| w.trim_end_matches(';'))
            .any(|w| w == member || (w.ends_with("/*") && member.starts_with(w.trim_end_matches('*'))));
        assert!(covered, "the Dockerfile's stand-ins loop does not make {member}'s sources");
    }
}
