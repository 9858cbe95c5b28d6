//! The shipped stack's configurations, checked by the tools that run them: `promtool` (Debian
//! `prometheus`), `amtool` (`prometheus-alertmanager`), `docker-compose config` (`docker-compose`),
//! and the live `aiops` binary for everything the dashboard and the rules query. No Docker engine
//! runs here, so the compose file is checked for what a validator can check: every mounted path
//! exists, published ports do not clash, and the aiops service's configuration is valid and points at
//! the other services.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::{Daemon, repo};
use serde_json::Value;

/// Runs a tool; a missing one fails with the package to install.
fn run(program: &str, args: &[&str], package: &str) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): apt-get install {package} (scripts/test.sh does)")
        })
}

fn ok(program: &str, args: &[&str], package: &str) -> String {
    let out = run(program, args, package);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn prometheus_config_rules_and_rule_tests_pass_promtool() {
    for file in ["prometheus/prometheus.yml", "prometheus/prometheus-ha.yml"] {
        let out = ok("promtool", &["check", "config", file], "prometheus");
        assert!(out.contains("SUCCESS"), "{out}");
    }
    let out = ok(
        "promtool",
        &["check", "rules", "prometheus/alert_rules.yml"],
        "prometheus",
    );
    assert!(out.contains("SUCCESS"), "{out}");
    ok(
        "promtool",
        &["test", "rules", "prometheus/alert_rules_test.yml"],
        "prometheus",
    );

    // The rule groups the stack promises.
    let rules = yaml(&repo().join("prometheus/alert_rules.yml"));
    let names: BTreeSet<&str> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "TargetDown",
        "NodeHighCPU",
        "NodeMemoryLow",
        "NodeDiskAlmostFull",
        "HighErrorRate",
        "HighLatency",
        "AiopsQueueBacklog",
        "AiopsDeadJobs",
        "AiopsAnalysisFailures",
        "AiopsLLMErrors",
    ] {
        assert!(
            names.contains(alert),
            "{alert} is missing from alert_rules.yml"
        );
    }
    for rule in rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
    {
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{rule}: a severity aiops and Slack understand"
        );
        assert!(
            rule["annotations"]["summary"].is_string(),
            "{rule}: a summary"
        );
    }
}

#[test]
fn alertmanager_config_passes_amtool_and_sends_everything_to_aiops_with_auth() {
    for file in [
        "alertmanager/alertmanager.yml",
        "alertmanager/alertmanager-ha.yml",
    ] {
        let out = ok("amtool", &["check-config", file], "prometheus-alertmanager");
        assert!(out.contains("SUCCESS"), "{out}");
    }
    let ha = yaml(&repo().join("alertmanager/alertmanager-ha.yml"));
    let urls: Vec<&str> = ha["receivers"][0]["webhook_configs"]
        .as_array()
        .expect("webhook_configs")
        .iter()
        .filter_map(|h| h["url"].as_str())
        .collect();
    assert_eq!(
        urls,
        [
            "http://aiops-a:8080/webhook/alerts",
            "http://aiops-b:8080/webhook/alerts"
        ],
        "each clustered Alertmanager sends to both replicas"
    );
    let config = yaml(&repo().join("alertmanager/alertmanager.yml"));
    let route = &config["route"];
    assert_eq!(route["receiver"], "aiops");
    assert!(
        route["group_by"]
            .as_array()
            .is_some_and(|g| g.iter().any(|l| l == "alertname"))
    );
    let receiver = config["receivers"]
        .as_array()
        .expect("receivers")
        .iter()
        .find(|r| r["name"] == "aiops")
        .expect("the aiops receiver");
    let hook = &receiver["webhook_configs"][0];
    assert_eq!(hook["url"], "http://aiops:8080/webhook/alerts");
    assert_eq!(hook["send_resolved"], true);
    let auth = &hook["http_config"]["authorization"];
    assert_eq!(auth["type"], "Bearer");
    assert!(
        auth["credentials_file"].is_string(),
        "the token comes from a file: {auth}"
    );
}

/// `docker-compose config` with a throwaway .env, parsed.
fn compose_config(env: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let env_file = dir.path().join(".env");
    std::fs::write(&env_file, env).expect("write .env");
    let env_path = env_file.to_str().expect("path");
    let text = ok(
        "docker-compose",
        &["--env-file", env_path, "-f", "docker-compose.yml", "config"],
        "docker-compose",
    );
    serde_saphyr::from_str(&text).expect("docker-compose config prints YAML")
}

#[test]
fn compose_file_is_valid_mounts_what_exists_and_wires_the_services_together() {
    // Without .env the file names the fix.
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.env");
    std::fs::write(&empty, "").expect("write");
    let out = run(
        "docker-compose",
        &[
            "--env-file",
            empty.to_str().expect("path"),
            "-f",
            "docker-compose.yml",
            "config",
            "-q",
        ],
        "docker-compose",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("scripts/setup.sh"),
        "{out:?}"
    );

    let config = compose_config(
        "AIOPS_AUTH_TOKEN=tok-compose\nGRAFANA_ADMIN_PASSWORD=pw\nPOSTGRES_PASSWORD=pg-compose\nLLM_PROVIDER=ollama\nLLM_MODEL=llama3.1\nLLM_BASE_URL=http://ollama:11434/v1\n",
    );
    let services = config["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    for service in [
        "aiops",
        "prometheus",
        "alertmanager",
        "node-exporter",
        "loki",
        "promtail",
        "grafana",
        "ollama",
        "postgres",
        "aiops-a",
        "aiops-b",
        "alertmanager-a",
        "alertmanager-b",
        "prometheus-ha",
    ] {
        assert!(names.contains(service), "{service} is missing");
    }
    assert_eq!(
        services["ollama"]["profiles"][0], "ollama",
        "Ollama is optional"
    );
    for service in [
        "postgres",
        "aiops-a",
        "aiops-b",
        "alertmanager-a",
        "alertmanager-b",
        "prometheus-ha",
    ] {
        assert_eq!(
            services[service]["profiles"][0], "ha",
            "{service} is in the ha profile"
        );
    }
    // The replicas share one PostgreSQL database; each clustered Alertmanager peers with the other.
    for replica in ["aiops-a", "aiops-b"] {
        let url = services[replica]["environment"]["AIOPS__STORE__URL"]
            .as_str()
            .expect("url");
        assert_eq!(
            url, "postgres://aiops:pg-compose@postgres:5432/aiops",
            "{replica}"
        );
    }
    for am in ["alertmanager-a", "alertmanager-b"] {
        let command = services[am]["command"][0].as_str().expect("command");
        assert!(
            command.contains("alertmanager-ha.yml")
                && command.contains("--cluster.peer=alertmanager-a:9094")
                && command.contains("--cluster.peer=alertmanager-b:9094"),
            "{am}: {command}"
        );
    }

    let root = std::fs::canonicalize(repo()).expect("repo");
    let mut published: BTreeMap<u64, &str> = BTreeMap::new();
    for (name, service) in services {
        assert!(
            service["networks"].get("aiops").is_some(),
            "{name} is on the aiops network"
        );
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume.as_str().expect("short volume syntax");
            let source = spec.split(':').next().expect("source");
            if source.starts_with('/') {
                let path = Path::new(source);
                if path.starts_with(&root) {
                    assert!(
                        path.exists(),
                        "{name} mounts {source}, which is not in the repo"
                    );
                } else {
                    // Host paths outside the repo: only what the collectors read.
                    assert!(
                        ["/", "/var/run/docker.sock"].contains(&source),
                        "{name} mounts host path {source}"
                    );
                }
            } else {
                assert!(
                    config["volumes"].get(source).is_some(),
                    "{name} uses the undeclared volume {source}"
                );
            }
        }
        for port in service["ports"].as_array().into_iter().flatten() {
            let host = port["published"]
                .as_u64()
                .or_else(|| port["published"].as_str().and_then(|p| p.parse().ok()))
                .expect("a published port");
            if let Some(other) = published.insert(host, name) {
                panic!("port {host} is published by both {other} and {name}");
            }
        }
    }

    // Every aiops service runs configs/compose.toml (mounted from configs/) with the environment
    // compose gives it: the configuration is valid, and it points at the compose services.
    for name in ["aiops", "aiops-a", "aiops-b"] {
        check_aiops_service(&root, name, &services[name], &names);
    }

    // Prometheus scrapes and alerts the compose services on their container ports.
    let prometheus = yaml(&repo().join("prometheus/prometheus.yml"));
    let mut targets: Vec<String> = Vec::new();
    for job in prometheus["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
    {
        for sc in job["static_configs"].as_array().into_iter().flatten() {
            targets.extend(
                sc["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned)),
            );
        }
    }
    targets.extend(
        prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned)),
    );
    for target in &targets {
        let host = target.split(':').next().expect("host");
        assert!(
            host == "localhost" || names.contains(host),
            "prometheus.yml targets {target}, which is no compose service"
        );
    }
    assert!(
        targets.iter().any(|t| t == "aiops:8080"),
        "Prometheus scrapes aiops"
    );

    // Grafana's datasources point at the services, with the uids the dashboard uses.
    let datasources = yaml(&repo().join("grafana/provisioning/datasources/datasources.yml"));
    let uids: BTreeMap<&str, &str> = datasources["datasources"]
        .as_array()
        .expect("datasources")
        .iter()
        .map(|d| {
            (
                d["uid"].as_str().expect("uid"),
                d["url"].as_str().expect("url"),
            )
        })
        .collect();
    assert_eq!(uids.get("prometheus"), Some(&"http://prometheus:9090"));
    assert_eq!(uids.get("loki"), Some(&"http://loki:3100"));
}

#[test]
fn setup_writes_a_private_env_that_compose_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("scripts")).expect("mkdir");
    let script = dir.path().join("scripts/setup.sh");
    std::fs::copy(repo().join("scripts/setup.sh"), &script).expect("copy");
    let out = Command::new(&script)
        .arg("--yes")
        .env("LLM_PROVIDER", "openai")
        .env("LLM_API_KEY", "sk-setup-canary")
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/canary",
        )
        .output()
        .expect("setup.sh runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("canary"),
        "setup.sh does not print secrets: {said}"
    );
    let env_file = dir.path().join(".env");
    let env = std::fs::read_to_string(&env_file).expect(".env written");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&env_file)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, ".env is private: {mode:o}");
    for line in [
        "LLM_PROVIDER=openai",
        "LLM_MODEL=gpt-4o-mini",
        "LLM_API_KEY=sk-setup-canary",
        "SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T/B/canary",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in {env}");
    }
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("AIOPS_AUTH_TOKEN="))
        .expect("a token");
    assert!(token.len() >= 32, "a generated token: {token}");

    // A second run keeps the token; compose takes the file.
    let again = Command::new(&script)
        .arg("--yes")
        .output()
        .expect("setup.sh runs");
    assert!(again.status.success());
    let env2 = std::fs::read_to_string(&env_file).expect(".env");
    assert!(
        env2.contains(&format!("AIOPS_AUTH_TOKEN={token}")),
        "{env2}"
    );
    let config = compose_config(&env2);
    assert_eq!(
        config["services"]["aiops"]["environment"]["AIOPS__LLM__PROVIDER"],
        "openai"
    );
}

/// The aiops service `name` of the compose file: its config file and environment pass
/// `check-config`, it listens where compose publishes, and it points at the compose services.
fn check_aiops_service(root: &Path, name: &str, aiops: &Value, names: &BTreeSet<&str>) {
    assert!(
        aiops["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v.as_str() == Some(&format!("{}/configs:/etc/aiops:ro", root.display()))),
        "{aiops}"
    );
    let environment = aiops["environment"].as_object().expect("environment");
    let file = environment["AIOPS_CONFIG"]
        .as_str()
        .expect("AIOPS_CONFIG")
        .strip_prefix("/etc/aiops/")
        .expect("a file of the mounted configs/");
    let mut check = Command::new(env!("CARGO_BIN_EXE_aiops"));
    check
        .args([
            "--config",
            &format!("{}/configs/{file}", root.display()),
            "check-config",
        ])
        .env_clear();
    for (key, value) in environment {
        if key != "AIOPS_CONFIG" {
            check.env(key, value.as_str().unwrap_or_default());
        }
    }
    let out = check.output().expect("aiops runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective: toml::Value = toml::from_str(&printed).expect("TOML");
    let listen = effective["server"]["listen"].as_str().expect("listen");
    let port: u64 = listen
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    assert!(
        aiops["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["target"].as_u64() == Some(port)),
        "aiops listens on {listen}, which compose publishes"
    );
    assert_eq!(effective["llm"]["provider"].as_str(), Some("ollama"));
    assert!(!printed.contains("tok-compose"), "the token is masked");
    for (key, service, port) in [("prometheus", "prometheus", 9090), ("loki", "loki", 3100)] {
        let url = effective[key]["url"].as_str().expect("url");
        assert_eq!(url, format!("http://{service}:{port}"), "{key}.url");
        assert!(names.contains(service));
    }
    assert_eq!(
        effective["grafana"]["prometheus_datasource"].as_str(),
        Some("prometheus"),
        "Explore links use the provisioned datasource's uid"
    );
}

/// Metric names a PromQL expression selects.
fn selected_metrics(expr: &str) -> Vec<String> {
    fn walk(e: &promql_parser::parser::Expr, out: &mut Vec<String>) {
        use promql_parser::parser::Expr;
        match e {
            Expr::VectorSelector(v) => out.extend(v.name.clone()),
            Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            _ => {}
        }
    }
    let parsed = promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut out = Vec::new();
    walk(&parsed, &mut out);
    out
}

/// The sample names a live /metrics can carry, from its `# TYPE` lines: a counter `x` is
/// exposed as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            match kind {
                "counter" => names.insert(format!("{name}_total")),
                "histogram" => {
                    for suffix in ["bucket", "sum", "count"] {
                        names.insert(format!("{name}_{suffix}"));
                    }
                    true
                }
                _ => names.insert(name.to_owned()),
            };
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_rules_query_is_one_aiops_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path(), &[]).await;
    let names = exported(&daemon.metrics().await);
    assert!(names.contains("aiops_queue_jobs"), "{names:?}");

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("grafana/dashboards/aiops.json")).expect("dashboard"),
    )
    .expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queried = BTreeSet::new();
    for panel in panels {
        assert_eq!(
            panel["datasource"]["uid"], "prometheus",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} queries something", panel["title"]);
        for target in targets {
            queried.extend(selected_metrics(target["expr"].as_str().expect("expr")));
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Webhook",
        "Queue depth",
        "Stage latency",
        "Analyses",
        "LLM tokens",
        "Delivery failures",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "a {wanted} panel: {titles:?}"
        );
    }
    let rules = yaml(&repo().join("prometheus/alert_rules.yml"));
    for rule in rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
    {
        queried.extend(
            selected_metrics(rule["expr"].as_str().expect("expr"))
                .into_iter()
                .filter(|m| m.starts_with("aiops_")),
        );
    }
    assert!(queried.len() >= 8, "{queried:?}");

    // scripts/test-alert.sh against the running daemon: the job is accepted and its analysis shown.
    let out = Command::new(repo().join("scripts/test-alert.sh"))
        .env("AIOPS_URL", &daemon.url)
        .env("AIOPS_TOKEN", "")
        .output()
        .expect("scripts/test-alert.sh runs (it needs curl)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("202 {\"job_id\""), "{text}");
    assert!(
        text.contains("\"state\": \"done\"") || text.contains("\"state\":\"done\""),
        "{text}"
    );
    assert!(text.contains("HighErrorRate"), "{text}");
    for metric in &queried {
        assert!(
            names.contains(metric),
            "{metric} is queried but aiops does not export it; it exports {names:?}"
        );
    }
}

#[test]
fn example_configs_are_valid_for_the_daemon() {
    for file in [
        "default.toml",
        "compose.toml",
        "openai.toml",
        "deepseek.toml",
        "ollama.toml",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_aiops"))
            .args([
                "--config",
                &format!("{}/configs/{file}", repo().display()),
                "check-config",
            ])
            .env_clear()
            .env("AIOPS__LLM__API_KEY", "sk-example")
            .output()
            .expect("aiops runs");
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Loki and Promtail have no validator here: they parse, and Promtail labels what aiops maps.
    let loki = yaml(&repo().join("loki/loki.yml"));
    assert_eq!(loki["server"]["http_listen_port"], 3100);
    assert_eq!(loki["auth_enabled"], false);
    let promtail = yaml(&repo().join("loki/promtail.yml"));
    assert_eq!(
        promtail["clients"][0]["url"],
        "http://loki:3100/loki/api/v1/push"
    );
    let targets: Vec<&str> = promtail["scrape_configs"][0]["relabel_configs"]
        .as_array()
        .expect("relabel_configs")
        .iter()
        .filter_map(|r| r["target_label"].as_str())
        .collect();
    assert!(targets.contains(&"service_name"), "{targets:?}");
}

#[test]
fn dockerfile_runs_as_a_user_with_a_healthcheck_aiops_understands_and_a_data_volume() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 3, "a multi-stage build");
    assert!(
        dockerfile.contains("cargo chef cook"),
        "dependencies build in their own layer"
    );
    let runtime = dockerfile
        .rsplit("\nFROM ")
        .next()
        .expect("the runtime stage");
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    let workdir = runtime
        .lines()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .expect("a WORKDIR")
        .trim();
    let volume = runtime
        .lines()
        .find_map(|l| l.strip_prefix("VOLUME "))
        .expect("a VOLUME");
    // The store's default URL (sqlite://data/aiops.db) is relative to WORKDIR: it must be the volume.
    assert!(
        volume.contains(&format!("\"{workdir}/data\"")),
        "{volume} holds {workdir}/data"
    );
    // The healthcheck command is one aiops has.
    let health = runtime
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|h| h.split("CMD").nth(1))
        .expect("a HEALTHCHECK CMD");
    let args: Vec<String> =
        serde_json::from_str(health.lines().next().expect("CMD").trim()).expect("exec form");
    assert_eq!(args[0], "/usr/local/bin/aiops");
    let help = Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(&args[1..])
        .arg("--help")
        .output()
        .expect("aiops runs");
    assert!(
        help.status.success(),
        "`aiops {}` exists",
        args[1..].join(" ")
    );
}
