//! From the engine's runtime values to the results' own types: the one place where a runtime type
//! (in `capture`, `console`, `probe`, `provider`) meets the published format. Each conversion names
//! every field, so a field added at run time is a compile error here rather than a silent change to
//! results.json.

use super::model::{
    Account, Attempt, CleanupStep, ConsoleFinding, ConsoleHit, HttpExchange, ImagePromotion, PromotionAction,
    PromotionKind, PromotionStatus, RuleKind, Screenshot, SshExchange,
};
use crate::{capture, console, probe, provider};

impl From<provider::Identity> for Account {
    fn from(i: provider::Identity) -> Self {
        let provider::Identity { account, principal } = i;
        Account { id: account, principal }
    }
}

impl From<provider::ImagePromotion> for ImagePromotion {
    fn from(p: provider::ImagePromotion) -> Self {
        use provider::promotion::{ActionKind, PromotionStatus as Status};
        let provider::ImagePromotion { image, region, cells, status, reason, actions } = p;
        let status = match status {
            Status::Promoted => PromotionStatus::Promoted,
            Status::NotPassed => PromotionStatus::NotPassed,
            Status::Withheld => PromotionStatus::Withheld,
            Status::Refused => PromotionStatus::Refused,
        };
        let actions = actions
            .into_iter()
            .map(|a| PromotionAction {
                kind: match a.kind {
                    ActionKind::Tags => PromotionKind::Tags,
                    ActionKind::Parameter => PromotionKind::SsmParameter,
                },
                target: a.target,
                error: a.error,
            })
            .collect();
        ImagePromotion { image, region, cells, status, reason, actions }
    }
}

impl From<capture::Screenshot> for Screenshot {
    fn from(s: capture::Screenshot) -> Self {
        let capture::Screenshot { path, offset_s, width, height, hash, duplicate_of } = s;
        Screenshot { path, offset_s, width, height, hash, duplicate_of }
    }
}

impl From<console::RuleKind> for RuleKind {
    fn from(kind: console::RuleKind) -> Self {
        match kind {
            console::RuleKind::MustContain => RuleKind::MustContain,
            console::RuleKind::MustNotContain => RuleKind::MustNotContain,
            console::RuleKind::Builtin => RuleKind::Builtin,
        }
    }
}

impl From<RuleKind> for console::RuleKind {
    fn from(kind: RuleKind) -> Self {
        match kind {
            RuleKind::MustContain => console::RuleKind::MustContain,
            RuleKind::MustNotContain => console::RuleKind::MustNotContain,
            RuleKind::Builtin => console::RuleKind::Builtin,
        }
    }
}

impl From<console::ConsoleHit> for ConsoleHit {
    fn from(h: console::ConsoleHit) -> Self {
        let console::ConsoleHit { line, text, first_seen_s } = h;
        ConsoleHit { line, text, first_seen_s }
    }
}

impl From<console::ConsoleFinding> for ConsoleFinding {
    fn from(f: console::ConsoleFinding) -> Self {
        let console::ConsoleFinding { kind, rule, passed, hits } = f;
        ConsoleFinding { kind: kind.into(), rule, passed, hits: hits.into_iter().map(Into::into).collect() }
    }
}

/// Back to the console's type, whose methods rank findings and word a cell's reason: the engine
/// decides a cell's status from the findings it recorded.
impl From<&ConsoleFinding> for console::ConsoleFinding {
    fn from(f: &ConsoleFinding) -> Self {
        let hits = f
            .hits
            .iter()
            .map(|h| console::ConsoleHit { line: h.line, text: h.text.clone(), first_seen_s: h.first_seen_s })
            .collect();
        console::ConsoleFinding { kind: f.kind.into(), rule: f.rule.clone(), passed: f.passed, hits }
    }
}

impl From<probe::HttpExchange> for HttpExchange {
    fn from(x: probe::HttpExchange) -> Self {
        let probe::HttpExchange { method, url, status, headers, body_excerpt, body_truncated } = x;
        HttpExchange { method, url, status, headers, body_excerpt, body_truncated }
    }
}

impl From<probe::SshExchange> for SshExchange {
    fn from(x: probe::SshExchange) -> Self {
        let probe::SshExchange { target, command, host_key, exit_status, exit_signal, stdout, stderr, truncated } = x;
        SshExchange { target, command, host_key, exit_status, exit_signal, stdout, stderr, truncated }
    }
}

/// The attempt as the report keeps it; what only the engine needs (`settled`, `silent`) stays behind.
impl From<probe::Attempt> for Attempt {
    fn from(a: probe::Attempt) -> Self {
        let probe::Attempt { at_s, passed, message, latency_ms, exchange, ssh, settled: _, silent: _, platform: _ } = a;
        Attempt { at_s, passed, message, latency_ms, exchange: exchange.map(Into::into), ssh: ssh.map(Into::into) }
    }
}

impl From<provider::CleanupStep> for CleanupStep {
    fn from(s: provider::CleanupStep) -> Self {
        let provider::CleanupStep { action, ok, message, attempts, resource, sweep } = s;
        CleanupStep { action, ok, message, attempts, resource, sweep }
    }
}

impl From<&crate::plan::baseline::BaselinePlan> for super::since::BaselineRules {
    fn from(b: &crate::plan::baseline::BaselinePlan) -> Self {
        super::since::BaselineRules {
            key: b.key.clone(),
            ratio: b.ratio,
            floor_s: b.floor.map(|f| f.as_secs_f64()),
            ignore_lines: b.ignore_lines.clone(),
            fail_on_regression: b.fail_on_regression,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_keeps_what_the_report_shows_and_drops_the_engine_s_flags() {
        let runtime = probe::Attempt {
            at_s: 1.5,
            passed: false,
            message: "status 503, expected 200".into(),
            latency_ms: 12,
            exchange: None,
            ssh: None,
            settled: true,
            silent: true,
            platform: false,
        };
        let kept = Attempt::from(runtime);
        assert_eq!(
            serde_json::to_value(&kept).unwrap(),
            serde_json::json!({ "at_s": 1.5, "passed": false, "message": "status 503, expected 200", "latency_ms": 12 })
        );
    }

    #[test]
    fn a_console_finding_goes_there_and_back() {
        let runtime = console::ConsoleFinding {
            kind: console::RuleKind::MustNotContain,
            rule: "panic".into(),
            passed: false,
            hits: vec![console::ConsoleHit { line: 3, text: "Kernel panic".into(), first_seen_s: Some(2.0) }],
        };
        let kept = ConsoleFinding::from(runtime.clone());
        assert_eq!(console::ConsoleFinding::from(&kept), runtime);
    }
}
