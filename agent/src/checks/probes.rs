//! The live probes' checks: pure judgements of a [`Probe`] snapshot (what the kubelet's
//! ports answered) next to the effective settings (what its files say they should answer).
//!
//! Why separate checks, and why never a change to the configuration checks: the files and
//! the ports are two witnesses. Each probe check judges only what its port answered; the
//! configuration checks judge only the files; `probe-contradiction` says, loudly and as a
//! critical failure of its own, where the two disagree (the files say the read-only port is
//! 0, yet it answers: another process or an old kubelet is listening). So a port that is
//! closed never turns a failing `kubelet-read-only-port` into a pass, and a port that is
//! open shows even when the files look right.
//!
//! How answers are read (docs/checks.md, "Live probes"):
//! - kubelet API (`GET https://address:port/pods`, no credentials): 401 anonymous refused
//!   (pass); 403 anonymous accepted, the authorizer (Webhook) refused this request (fail);
//!   2xx anyone can read the node's pods (fail); refused with `enableServer: false` pass.
//! - read-only port (`GET http://address:readOnlyPort/pods`, or 10255 when it is 0): 2xx
//!   open (fail); connection refused closed (pass).
//! - healthz (`GET http://healthzBindAddress:healthzPort/healthz`): 200 (pass); another
//!   status, the kubelet says it is unhealthy, or nothing listens (fail).
//!
//! Anything the probe could not settle (a timeout, a failed TLS handshake, an answer that
//! is not HTTP, an unexpected status, a probe not sent) is `error`, never a pass: silence
//! within a second is not proof that a port is closed. A refused connection at an address
//! or port that had to be assumed (the settings could not be read) is `error` too.

use nodeproof_proto::{CheckResult, Warning};
use serde_json::Value;

use super::{Check, OnUnmet, Verdict};
use crate::effective::Effective;
use crate::probe::{Answer, Endpoint, Outcome, Probe};

/// What the probe checks judge: the ports' answers next to the effective settings that
/// predict them.
#[derive(Debug, Clone)]
pub struct Observed {
    pub eff: Effective,
    pub probe: Probe,
}

/// Runs every probe check, in catalogue order.
pub fn evaluate(eff: &Effective, probe: &Probe) -> Vec<CheckResult> {
    let observed = Observed {
        eff: eff.clone(),
        probe: probe.clone(),
    };
    CATALOGUE.iter().map(|c| c.run(&observed)).collect()
}

/// One report warning per contradiction, so the text report's warnings say it too.
pub fn warnings(eff: &Effective, probe: &Probe) -> Vec<Warning> {
    compare_all(eff, probe)
        .into_iter()
        .filter_map(|(_, c)| match c {
            Comparison::Contradicts(message) => Some(Warning {
                message: format!("CONTRADICTION (probe-contradiction): {message}"),
                file: None,
                field: None,
            }),
            _ => None,
        })
        .collect()
}

/// Not CIS recommendations: `cis` holds a `P.n` label, unique because the collector keys a
/// node's checks on it; the related CIS control is named in the title. All are Automated
/// (no person has to judge a port's answer) and fail when unmet.
pub static CATALOGUE: &[Check<Observed>] = &[
    Check {
        id: "probe-kubelet-anonymous",
        cis: "P.1",
        title: "The kubelet API refuses anonymous requests (live probe; cf. 4.2.1, 4.2.2)",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "GET https://<address>:<port>/pods without credentials: 401",
        flag_fix: "--anonymous-auth=false --authorization-mode=Webhook",
        config_fix: "authentication:\n  anonymous:\n    enabled: false\nauthorization:\n  mode: Webhook",
        judge: |o| kubelet_anonymous(&o.eff, &o.probe).verdict(),
    },
    Check {
        id: "probe-read-only-port",
        cis: "P.2",
        title: "The read-only port does not answer (live probe; cf. 4.2.4)",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "GET http://<address>:<readOnlyPort or 10255>/pods: connection refused",
        flag_fix: "--read-only-port=0 (and stop any other process listening on the port)",
        config_fix: "readOnlyPort: 0",
        judge: |o| read_only_port(&o.eff, &o.probe).verdict(),
    },
    Check {
        id: "probe-healthz",
        cis: "P.3",
        title: "The kubelet's healthz endpoint answers ok where configured (live probe)",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "GET http://<healthzBindAddress>:<healthzPort>/healthz: 200",
        flag_fix: "(none: find out why the kubelet is unhealthy or not running: journalctl -u kubelet)",
        config_fix: "healthzBindAddress: 127.0.0.1\nhealthzPort: 10248",
        judge: |o| healthz(&o.eff, &o.probe).verdict(),
    },
    Check {
        id: "probe-contradiction",
        cis: "P.4",
        title: "What answers on the kubelet's ports matches its configuration (live probe)",
        scored: true,
        on_unmet: OnUnmet::Fail,
        expected: "every answer is the one the effective settings predict",
        flag_fix: "(none: restart the kubelet so it runs with the files on disk, and find other listeners: ss -ltnp)",
        config_fix: "(none: the files are not what is running, so no setting fixes this)",
        judge: |o| contradiction(&o.eff, &o.probe).verdict(),
    },
];

/// A probe judge's conclusion, before it becomes a [`Verdict`].
#[derive(Debug, Clone, PartialEq)]
struct Judged {
    said: Said,
    actual: String,
    /// How the probed address and port follow from the settings.
    origin: Option<String>,
    note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    Pass,
    Fail,
    /// The answer settles nothing: the check reports `error`, never a verdict.
    Error,
}

impl Judged {
    /// The shared catalogue's form: a verdict resting on no setting (`source` is empty,
    /// `origin` says where the probe went and why), or, for `error`, the reason with what
    /// the probe saw, as every group reports a value it could not know.
    fn verdict(self) -> Result<Verdict, String> {
        let met = match self.said {
            Said::Pass => true,
            Said::Fail => false,
            Said::Error if self.note.is_empty() => return Err(self.actual),
            Said::Error => return Err(format!("{}. {}", self.actual, self.note)),
        };
        Ok(Verdict {
            met,
            actual: self.actual,
            source: None,
            origin: self.origin,
            note: self.note,
        })
    }
}

// ---- judges ---------------------------------------------------------------------------

fn judged(said: Said, answer: Option<&Answer>, note: impl Into<String>) -> Judged {
    Judged {
        said,
        actual: answer.map_or_else(|| "not probed".to_string(), Answer::describe),
        origin: answer
            .and_then(|a| a.target.as_ref())
            .map(|t| t.basis.clone()),
        note: note.into(),
    }
}

/// The probe of `endpoint`, or an `error` verdict when there is none (cannot happen with
/// a snapshot from `probe::probe`, which answers every endpoint).
fn answer_of(probe: &Probe, endpoint: Endpoint) -> Result<&Answer, Judged> {
    probe.answer(endpoint).ok_or_else(|| {
        judged(
            Said::Error,
            None,
            format!("the snapshot has no probe of the {}", endpoint.as_str()),
        )
    })
}

/// `error` for what a probe could not settle, with the reason.
fn unsettled(answer: &Answer) -> Judged {
    let note = match &answer.outcome {
        Outcome::Timeout => {
            "No answer within a second: the port may be filtered, or the process behind it \
             stalled; a closed port refuses at once, so this is not a pass."
        }
        Outcome::Tls(_) => {
            "The TLS handshake failed: the port does not speak TLS, or the kubelet allows no \
             cipher suite this agent offers (TLS 1.2 ECDHE with AES-GCM or ChaCha20, TLS 1.3)."
        }
        Outcome::NotHttp(_) => "Something listens, but it did not answer HTTP.",
        Outcome::Failed(_) => "The probe could not be sent.",
        Outcome::Skipped(_) | Outcome::Off(_) => "The probe was not sent.",
        Outcome::Refused | Outcome::Status(_) => "",
    };
    judged(Said::Error, Some(answer), note)
}

fn assumed(answer: &Answer) -> bool {
    answer.target.as_ref().is_some_and(|t| t.assumed)
}

fn refused_at_assumed(answer: &Answer) -> Judged {
    judged(
        Said::Error,
        Some(answer),
        "Nothing listens there, but the address or port was the kubelet's default, probed \
         because the settings could not be read: the kubelet may listen elsewhere.",
    )
}

fn kubelet_anonymous(eff: &Effective, probe: &Probe) -> Judged {
    let a = match answer_of(probe, Endpoint::KubeletApi) {
        Ok(a) => a,
        Err(j) => return j,
    };
    match &a.outcome {
        Outcome::Status(401) => judged(
            Said::Pass,
            Some(a),
            "Anonymous requests are refused (401 Unauthorized).",
        ),
        Outcome::Status(403) => judged(
            Said::Fail,
            Some(a),
            "Anonymous requests are accepted (as system:anonymous) and only the authorizer \
             refused this one (403 Forbidden): authorization is Webhook, so any RBAC grant to \
             system:anonymous or system:unauthenticated opens the kubelet API to everyone.",
        ),
        Outcome::Status(code) if (200..300).contains(code) => judged(
            Said::Fail,
            Some(a),
            "Anyone who reaches this port reads the node's pods without credentials: \
             anonymous authentication is on and the authorizer lets it through \
             (AlwaysAllow, or RBAC grants system:anonymous). Exec and logs are likely open too.",
        ),
        Outcome::Status(code) => judged(
            Said::Error,
            Some(a),
            format!(
                "HTTP {code} is none of the kubelet's answers to an anonymous request (401, \
                 403, 200): find out what listens there (ss -ltnp)."
            ),
        ),
        Outcome::Refused if assumed(a) => refused_at_assumed(a),
        Outcome::Refused => match eff.lookup("enableServer").map(|s| &s.value) {
            Ok(Value::Bool(false)) => judged(
                Said::Pass,
                Some(a),
                "Nothing listens: the kubelet runs with enableServer: false, so it serves no \
                 API to ask.",
            ),
            _ => judged(
                Said::Error,
                Some(a),
                "Nothing listens where the settings say the kubelet serves, so whether it \
                 answers anonymous requests could not be asked (see probe-contradiction).",
            ),
        },
        _ => unsettled(a),
    }
}

fn read_only_port(_eff: &Effective, probe: &Probe) -> Judged {
    let a = match answer_of(probe, Endpoint::ReadOnly) {
        Ok(a) => a,
        Err(j) => return j,
    };
    match &a.outcome {
        Outcome::Status(code) if (200..300).contains(code) => judged(
            Said::Fail,
            Some(a),
            "The read-only port is open: anyone who reaches it reads the node's pods, their \
             specs and metrics over plain HTTP, without credentials.",
        ),
        Outcome::Status(code) => judged(
            Said::Error,
            Some(a),
            format!(
                "Something answers HTTP {code} there, which the kubelet's read-only port never \
                 does for /pods: find out what listens (ss -ltnp)."
            ),
        ),
        Outcome::Refused if assumed(a) => refused_at_assumed(a),
        Outcome::Refused => judged(
            Said::Pass,
            Some(a),
            "Closed: nothing listens on the read-only port.",
        ),
        _ => unsettled(a),
    }
}

fn healthz(_eff: &Effective, probe: &Probe) -> Judged {
    let a = match answer_of(probe, Endpoint::Healthz) {
        Ok(a) => a,
        Err(j) => return j,
    };
    match &a.outcome {
        Outcome::Status(200) => judged(
            Said::Pass,
            Some(a),
            "The kubelet answers healthz, so it is up and this agent reaches its network.",
        ),
        Outcome::Status(code) => judged(
            Said::Fail,
            Some(a),
            format!(
                "HTTP {code}: the kubelet reports itself unhealthy (or another process answers)."
            ),
        ),
        Outcome::Off(_) => judged(
            Said::Pass,
            Some(a),
            "healthz is turned off, so there is nothing to probe.",
        ),
        Outcome::Refused if assumed(a) => refused_at_assumed(a),
        Outcome::Refused => judged(
            Said::Fail,
            Some(a),
            "Nothing listens where the settings put healthz: the kubelet is not running with \
             these settings (see probe-contradiction).",
        ),
        _ => unsettled(a),
    }
}

fn contradiction(eff: &Effective, probe: &Probe) -> Judged {
    let compared = compare_all(eff, probe);
    let mut contradictions = Vec::new();
    let mut consistent = Vec::new();
    let mut unknown = Vec::new();
    for (endpoint, c) in compared {
        match c {
            Comparison::Contradicts(m) => contradictions.push(m),
            Comparison::Consistent(m) => consistent.push(m),
            Comparison::Unknown(m) => unknown.push(format!("{}: {m}", endpoint.as_str())),
        }
    }
    let not_compared = if unknown.is_empty() {
        String::new()
    } else {
        format!(" Not compared: {}.", unknown.join("; "))
    };
    if !contradictions.is_empty() {
        return Judged {
            said: Said::Fail,
            actual: contradictions.join("; "),
            origin: None,
            note: format!(
                "CONTRADICTION: the node's ports do not answer as the kubelet's files say. \
                 The configuration checks judge the files; what listens is not what they \
                 describe (another process or an old kubelet on the port, or files changed \
                 since the kubelet started).{not_compared}"
            ),
        };
    }
    if consistent.is_empty() {
        return Judged {
            said: Said::Error,
            actual: "nothing compared".to_string(),
            origin: None,
            note: format!("No probe answer could be compared with the settings.{not_compared}"),
        };
    }
    Judged {
        said: Said::Pass,
        actual: consistent.join("; "),
        origin: None,
        note: format!("The answers match the settings.{not_compared}"),
    }
}

// ---- predictions ----------------------------------------------------------------------

/// What the settings say an endpoint answers.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Nothing listens; why.
    Silent(String),
    /// It answers one of these statuses (any, when empty); why.
    Answers(Vec<u16>, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Comparison {
    Consistent(String),
    Contradicts(String),
    Unknown(String),
}

fn bool_at(eff: &Effective, path: &str) -> Result<bool, String> {
    let s = eff.lookup(path)?;
    s.value
        .as_bool()
        .ok_or_else(|| format!("{path} is {}, not a boolean", s.value))
}

fn expect(eff: &Effective, endpoint: Endpoint) -> Result<Expect, String> {
    match endpoint {
        Endpoint::KubeletApi => {
            if !bool_at(eff, "enableServer")? {
                return Ok(Expect::Silent("enableServer is false".into()));
            }
            if !bool_at(eff, "authentication.anonymous.enabled")? {
                return Ok(Expect::Answers(
                    vec![401],
                    "anonymous authentication is off, so 401".into(),
                ));
            }
            let mode = eff.lookup("authorization.mode")?;
            match mode.value.as_str() {
                Some("AlwaysAllow") => Ok(Expect::Answers(
                    vec![200],
                    "anonymous authentication is on and authorization AlwaysAllow, so 200".into(),
                )),
                Some(_) => Ok(Expect::Answers(
                    vec![403, 200],
                    "anonymous authentication is on and authorization Webhook, so 403 (200 if \
                     RBAC grants system:anonymous)"
                        .into(),
                )),
                None => Err(format!("authorization.mode is {}", mode.value)),
            }
        }
        Endpoint::ReadOnly => {
            let s = eff.lookup("readOnlyPort")?;
            match s.value.as_i64() {
                Some(0) => Ok(Expect::Silent("readOnlyPort is 0".into())),
                Some(p) => Ok(Expect::Answers(
                    vec![200],
                    format!("readOnlyPort is {p}, so 200"),
                )),
                None => Err(format!("readOnlyPort is {}", s.value)),
            }
        }
        Endpoint::Healthz => Ok(Expect::Answers(
            Vec::new(),
            "healthz is on, so an answer".into(),
        )),
    }
}

fn compare_all(eff: &Effective, probe: &Probe) -> Vec<(Endpoint, Comparison)> {
    Endpoint::ALL
        .into_iter()
        .map(|e| {
            let c = match probe.answer(e) {
                Some(a) => compare(eff, a),
                None => Comparison::Unknown("not probed".into()),
            };
            (e, c)
        })
        .collect()
}

fn compare(eff: &Effective, a: &Answer) -> Comparison {
    let seen = a.describe();
    if let Outcome::Off(why) = &a.outcome {
        return Comparison::Consistent(format!("{}: off ({why})", a.endpoint.as_str()));
    }
    if assumed(a) {
        return Comparison::Unknown(
            "the settings could not be read, so defaults were probed".into(),
        );
    }
    let expected = match expect(eff, a.endpoint) {
        Ok(e) => e,
        Err(why) => return Comparison::Unknown(why),
    };
    // Did anything accept the connection?
    let listening = matches!(
        a.outcome,
        Outcome::Status(_) | Outcome::Tls(_) | Outcome::NotHttp(_)
    );
    match (&expected, &a.outcome) {
        (Expect::Silent(why), Outcome::Refused) => {
            Comparison::Consistent(format!("{why}, and {seen}"))
        }
        (Expect::Silent(why), _) if listening => Comparison::Contradicts(format!(
            "{why}, yet {seen}: another process or an old kubelet is listening there"
        )),
        (Expect::Answers(_, why), Outcome::Refused) => Comparison::Contradicts(format!(
            "{why}, yet {seen}: the kubelet is not running with these settings, or listens \
             elsewhere"
        )),
        (Expect::Answers(codes, why), Outcome::Status(code)) => {
            if codes.is_empty() || codes.contains(code) {
                Comparison::Consistent(format!("{why}, and {seen}"))
            } else {
                Comparison::Contradicts(format!(
                    "{why}, yet {seen}: the process answering is not configured as the files say"
                ))
            }
        }
        _ => Comparison::Unknown(format!("{seen}, which settles nothing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Netns, Scheme, Target};
    use nodeproof_proto::{Setting, Severity, Source, Status};
    use std::net::{IpAddr, Ipv4Addr};

    fn put(eff: &mut Effective, path: &str, value: Value) {
        eff.settings.insert(
            path.to_string(),
            Setting {
                value,
                source: Source::ConfigFile,
                origin: "/var/lib/kubelet/config.yaml".into(),
            },
        );
    }

    /// The settings of a kubelet: anonymous on/off, mode, read-only port.
    fn settings(anonymous: bool, mode: &str, read_only: i64) -> Effective {
        let mut eff = Effective::default();
        put(&mut eff, "enableServer", Value::Bool(true));
        put(
            &mut eff,
            "authentication.anonymous.enabled",
            Value::Bool(anonymous),
        );
        put(&mut eff, "authorization.mode", Value::from(mode));
        put(&mut eff, "readOnlyPort", Value::from(read_only));
        put(&mut eff, "healthzPort", Value::from(10248));
        eff
    }

    fn answer(endpoint: Endpoint, port: u16, outcome: Outcome) -> Answer {
        Answer {
            endpoint,
            target: Some(Target {
                endpoint,
                scheme: if endpoint == Endpoint::KubeletApi {
                    Scheme::Https
                } else {
                    Scheme::Http
                },
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
                path: "/pods",
                basis: "test".into(),
                assumed: false,
            }),
            outcome,
        }
    }

    fn probe(api: Outcome, read_only: Outcome, healthz: Outcome) -> Probe {
        Probe {
            netns: Netns::Same,
            answers: vec![
                answer(Endpoint::KubeletApi, 10250, api),
                answer(Endpoint::ReadOnly, 10255, read_only),
                answer(Endpoint::Healthz, 10248, healthz),
            ],
        }
    }

    fn statuses(eff: &Effective, p: &Probe) -> Vec<(String, Status)> {
        evaluate(eff, p)
            .into_iter()
            .map(|c| (c.id, c.status))
            .collect()
    }

    fn status_of(eff: &Effective, p: &Probe, id: &str) -> Status {
        evaluate(eff, p)
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.status)
            .expect("check present")
    }

    #[test]
    fn catalogue_is_in_protos_catalogue_with_unique_labels() {
        for c in CATALOGUE {
            let meta = nodeproof_proto::check_meta(c.id).expect("in proto's catalogue");
            assert_eq!(meta.cis, c.cis, "{}", c.id);
            assert!(meta.scored && c.scored, "{}", c.id);
            assert_eq!(c.on_unmet, OnUnmet::Fail, "{}", c.id);
            assert!(c.id.starts_with("probe-"), "{}", c.id);
            assert!(c.cis.starts_with("P."), "{}", c.id);
        }
        let sev = |id| nodeproof_proto::check_meta(id).unwrap().severity;
        assert_eq!(sev("probe-kubelet-anonymous"), Severity::Critical);
        assert_eq!(sev("probe-read-only-port"), Severity::Critical);
        assert_eq!(sev("probe-contradiction"), Severity::Critical);
        assert_eq!(sev("probe-healthz"), Severity::Low);
    }

    #[test]
    fn a_secure_kubelet_that_answers_as_configured_passes_every_probe() {
        let eff = settings(false, "Webhook", 0);
        let p = probe(Outcome::Status(401), Outcome::Refused, Outcome::Status(200));
        for (id, s) in statuses(&eff, &p) {
            assert_eq!(s, Status::Pass, "{id}");
        }
    }

    #[test]
    fn answers_401_403_200_mean_refused_webhook_and_open() {
        let cases = [
            (false, "Webhook", 401, Status::Pass),
            (true, "Webhook", 403, Status::Fail),
            (true, "AlwaysAllow", 200, Status::Fail),
        ];
        for (anonymous, mode, code, want) in cases {
            let eff = settings(anonymous, mode, 0);
            let p = probe(
                Outcome::Status(code),
                Outcome::Refused,
                Outcome::Status(200),
            );
            assert_eq!(
                status_of(&eff, &p, "probe-kubelet-anonymous"),
                want,
                "{code}"
            );
            // Each posture answers as its settings predict: no contradiction.
            assert_eq!(
                status_of(&eff, &p, "probe-contradiction"),
                Status::Pass,
                "{code}"
            );
        }
    }

    #[test]
    fn an_open_read_only_port_fails() {
        let eff = settings(false, "Webhook", 10255);
        let p = probe(
            Outcome::Status(401),
            Outcome::Status(200),
            Outcome::Status(200),
        );
        assert_eq!(status_of(&eff, &p, "probe-read-only-port"), Status::Fail);
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Pass);
    }

    /// The example: the files say 0, yet the port answers.
    #[test]
    fn read_only_port_answering_though_the_files_say_0_is_a_critical_contradiction() {
        let eff = settings(false, "Webhook", 0);
        let p = probe(
            Outcome::Status(401),
            Outcome::Status(200),
            Outcome::Status(200),
        );
        let results = evaluate(&eff, &p);
        let c = results
            .iter()
            .find(|c| c.id == "probe-contradiction")
            .unwrap();
        assert_eq!((c.status, c.severity), (Status::Fail, Severity::Critical));
        assert!(c.note.starts_with("CONTRADICTION"), "{}", c.note);
        assert!(c.actual.contains("readOnlyPort is 0, yet"), "{}", c.actual);
        assert!(c.actual.contains("old kubelet"), "{}", c.actual);
        assert_eq!(status_of(&eff, &p, "probe-read-only-port"), Status::Fail);
        let w = warnings(&eff, &p);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].message.starts_with("CONTRADICTION"),
            "{}",
            w[0].message
        );
    }

    /// The other way round: the files say open, the port is closed. The probe check passes
    /// (nothing listens) but the contradiction fails; the configuration check is not the
    /// probe's to change.
    #[test]
    fn a_closed_port_the_files_call_open_is_a_contradiction_not_a_pass() {
        let eff = settings(false, "Webhook", 10255);
        let p = probe(Outcome::Status(401), Outcome::Refused, Outcome::Status(200));
        assert_eq!(status_of(&eff, &p, "probe-read-only-port"), Status::Pass);
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Fail);
    }

    #[test]
    fn anonymous_answers_that_contradict_the_settings() {
        // Files: anonymous off. Port: 200.
        let eff = settings(false, "Webhook", 0);
        let p = probe(Outcome::Status(200), Outcome::Refused, Outcome::Status(200));
        assert_eq!(status_of(&eff, &p, "probe-kubelet-anonymous"), Status::Fail);
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Fail);
        // Files: anonymous on with AlwaysAllow. Port: 401.
        let eff = settings(true, "AlwaysAllow", 0);
        let p = probe(Outcome::Status(401), Outcome::Refused, Outcome::Status(200));
        assert_eq!(status_of(&eff, &p, "probe-kubelet-anonymous"), Status::Pass);
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Fail);
        // Files: anonymous on with Webhook. Port: 200 (RBAC may grant it): no contradiction.
        let eff = settings(true, "Webhook", 0);
        let p = probe(Outcome::Status(200), Outcome::Refused, Outcome::Status(200));
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Pass);
    }

    #[test]
    fn what_a_probe_cannot_settle_is_error_never_pass() {
        let eff = settings(false, "Webhook", 0);
        for outcome in [
            Outcome::Timeout,
            Outcome::Tls("bad record".into()),
            Outcome::NotHttp("garbage".into()),
            Outcome::Failed("unreachable".into()),
            Outcome::Skipped("another network namespace".into()),
        ] {
            let p = probe(outcome.clone(), outcome.clone(), outcome.clone());
            for id in [
                "probe-kubelet-anonymous",
                "probe-read-only-port",
                "probe-healthz",
            ] {
                assert_eq!(status_of(&eff, &p, id), Status::Error, "{id} {outcome:?}");
            }
            // Nothing compared (unknown), except that something accepted the connection on
            // the read-only port the files turn off.
            let listening = matches!(outcome, Outcome::Tls(_) | Outcome::NotHttp(_));
            let want = if listening {
                Status::Fail
            } else {
                Status::Error
            };
            assert_eq!(
                status_of(&eff, &p, "probe-contradiction"),
                want,
                "{outcome:?}"
            );
        }
        // Unexpected statuses are not interpreted either.
        let p = probe(
            Outcome::Status(404),
            Outcome::Status(404),
            Outcome::Status(200),
        );
        assert_eq!(
            status_of(&eff, &p, "probe-kubelet-anonymous"),
            Status::Error
        );
        assert_eq!(status_of(&eff, &p, "probe-read-only-port"), Status::Error);
    }

    #[test]
    fn something_on_a_port_the_files_turn_off_is_a_contradiction_even_without_http() {
        let eff = settings(false, "Webhook", 0);
        let p = probe(
            Outcome::Status(401),
            Outcome::NotHttp("ssh banner".into()),
            Outcome::Status(200),
        );
        assert_eq!(status_of(&eff, &p, "probe-read-only-port"), Status::Error);
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Fail);
    }

    #[test]
    fn refused_at_an_assumed_address_proves_nothing() {
        let eff = Effective {
            config_error: Some("unreadable".into()),
            ..Effective::default()
        };
        let mut p = probe(Outcome::Refused, Outcome::Refused, Outcome::Refused);
        for a in &mut p.answers {
            if let Some(t) = &mut a.target {
                t.assumed = true;
            }
        }
        for (id, s) in statuses(&eff, &p) {
            assert_eq!(s, Status::Error, "{id}");
        }
        // But an open port is open wherever the address came from.
        p.answers[1].outcome = Outcome::Status(200);
        assert_eq!(status_of(&eff, &p, "probe-read-only-port"), Status::Fail);
    }

    #[test]
    fn a_disabled_server_or_healthz_that_stays_silent_is_consistent() {
        let mut eff = settings(false, "Webhook", 0);
        put(&mut eff, "enableServer", Value::Bool(false));
        let mut p = probe(Outcome::Refused, Outcome::Refused, Outcome::Status(200));
        p.answers[2] = Answer {
            endpoint: Endpoint::Healthz,
            target: None,
            outcome: Outcome::Off("healthzPort 0".into()),
        };
        for (id, s) in statuses(&eff, &p) {
            assert_eq!(s, Status::Pass, "{id}");
        }
        // ... and a server that answers anyway contradicts it.
        p.answers[0].outcome = Outcome::Status(401);
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Fail);
    }

    #[test]
    fn unhealthy_or_missing_healthz_fails() {
        let eff = settings(false, "Webhook", 0);
        let p = probe(Outcome::Status(401), Outcome::Refused, Outcome::Status(500));
        assert_eq!(status_of(&eff, &p, "probe-healthz"), Status::Fail);
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Pass);
        let p = probe(Outcome::Status(401), Outcome::Refused, Outcome::Refused);
        assert_eq!(status_of(&eff, &p, "probe-healthz"), Status::Fail);
        assert_eq!(status_of(&eff, &p, "probe-contradiction"), Status::Fail);
    }
}
