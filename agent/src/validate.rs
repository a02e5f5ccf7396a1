//! The configurations the kubelet refuses to start with.
//!
//! A kubelet exits before it serves when its configuration fails validation
//! (`ValidateKubeletConfiguration`), names a feature gate it does not know
//! (`featuregate.SetFromMap`), asks for an authorization mode `BuildAuthz` does not build,
//! a TLS version or cipher suite `cliflag` does not know, or an override hostname
//! `GetHostname` rejects. A running kubelet therefore cannot be running with such a
//! configuration: what is on disk changed after it started, or it is crash-looping. No
//! verdict on it is true, so every check of the report is `error`, naming the rule and the
//! upstream function that refuses it (see docs/effective-config.md, "Refusal rules").
//!
//! Only values nodeproof computes are validated (the settings in `effective::TRACKED`, the
//! feature gates and `--hostname-override`); a value that cannot be known is skipped, never
//! guessed. The rules of `ValidateKubeletConfiguration` on fields nodeproof does not compute
//! are listed as not covered in the docs.

use nodeproof_proto::{CheckResult, Setting, Status, Warning};
use serde_json::Value;

use crate::effective::{Effective, KubeletMinor};

/// One rule the kubelet refuses the configuration by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The upstream function, with its file (`ValidateKubeletConfiguration
    /// (pkg/kubelet/apis/config/validation/validation.go)`).
    pub function: &'static str,
    /// The rule, worded as the kubelet's error is, plus where the value came from.
    pub rule: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.function, self.rule)
    }
}

const VALIDATE: &str =
    "ValidateKubeletConfiguration (pkg/kubelet/apis/config/validation/validation.go)";
const SET_FROM_MAP: &str =
    "featureGate.SetFromMap (staging/src/k8s.io/component-base/featuregate/feature_gate.go)";
const BUILD_AUTHZ: &str = "BuildAuthz (cmd/kubelet/app/auth.go)";
const TLS_CIPHERS: &str = "InitializeTLS (cmd/kubelet/app/server.go) via cliflag.TLSCipherSuites \
     (staging/src/k8s.io/component-base/cli/flag/ciphersuites_flag.go)";
const TLS_VERSION: &str = "InitializeTLS (cmd/kubelet/app/server.go) via cliflag.TLSVersion \
     (staging/src/k8s.io/component-base/cli/flag/ciphersuites_flag.go)";
const GET_HOSTNAME: &str =
    "GetHostname (k8s.io/component-helpers/node/util, called by cmd/kubelet/app/server.go)";

/// The names `cliflag.TLSCipherSuites` accepts: Go's `tls.CipherSuites()` and
/// `tls.InsecureCipherSuites()` (crypto/tls/cipher_suites.go) plus the two legacy ChaCha20
/// names the flag package keeps. The TLS 1.3 names are among them.
pub const KNOWN_CIPHERS: &[&str] = &[
    // tls.CipherSuites(): TLS 1.3
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    // tls.CipherSuites(): TLS 1.0-1.2
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    // tls.InsecureCipherSuites() (some moved between the two lists across Go releases; the
    // union is what the flag accepts)
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    // cliflag's legacy names
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
];

/// The TLS 1.3 suites: Go never negotiates them in TLS 1.2 and ignores
/// `Config.CipherSuites` for TLS 1.3, so in `tlsCipherSuites` they change nothing.
pub const TLS13_CIPHERS: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The names `cliflag.TLSVersion` accepts (besides "", the default).
const TLS_VERSIONS: &[&str] = &[
    "VersionTLS10",
    "VersionTLS11",
    "VersionTLS12",
    "VersionTLS13",
];

/// Feature gates the kubelet registers, as nodeproof knows them: the kubelet's own
/// (pkg/features/kube_features.go) and the common ones from the staging libraries it
/// registers (component-base logs, client-go). The list is not per version: it decides only
/// whether a name is a miscasing of a real gate (refused by every version: the gate map is
/// case sensitive and no two gates differ only in case) and whether nodeproof can tell at
/// all. A name that is on it may still be unknown to one version (added later, or removed
/// after going GA); nodeproof never refuses on that.
pub const KNOWN_GATES: &[&str] = &[
    "AllowDNSOnlyNodeCSR",
    "AllowInsecureKubeletCertificateSigningRequests",
    "AllowOverwriteTerminationGracePeriodSeconds",
    "AnyVolumeDataSource",
    "AppArmor",
    "AppArmorFields",
    "AuthorizeNodeWithSelectors",
    "AuthorizeWithSelectors",
    "CPUManager",
    "CPUManagerPolicyAlphaOptions",
    "CPUManagerPolicyBetaOptions",
    "CPUManagerPolicyOptions",
    "CSIMigrationPortworx",
    "CSIVolumeHealth",
    "ClusterTrustBundle",
    "ClusterTrustBundleProjection",
    "ComponentSLIs",
    "ContainerCheckpoint",
    "ContextualLogging",
    "CoordinatedLeaderElection",
    "CronJobsScheduledAnnotation",
    "CrossNamespaceVolumeDataSource",
    "CustomCPUCFSQuotaPeriod",
    "DevicePluginCDIDevices",
    "DisableAllocatorDualWrite",
    "DisableCloudProviders",
    "DisableKubeletCloudCredentialProviders",
    "DisableNodeKubeProxyVersion",
    "DynamicResourceAllocation",
    "ElasticIndexedJob",
    "EventedPLEG",
    "ExecProbeTimeout",
    "GracefulNodeShutdown",
    "GracefulNodeShutdownBasedOnPodPriority",
    "HPAContainerMetrics",
    "HPAScaleToZero",
    "HonorPVReclaimPolicy",
    "ImageMaximumGCAge",
    "ImageVolume",
    "InPlacePodVerticalScaling",
    "InTreePluginPortworxUnregister",
    "InformerResourceVersion",
    "JobBackoffLimitPerIndex",
    "JobManagedBy",
    "JobPodFailurePolicy",
    "JobPodReplacementPolicy",
    "JobSuccessPolicy",
    "KubeProxyDrainingTerminatingNodes",
    "KubeletCgroupDriverFromCRI",
    "KubeletCrashLoopBackOffMax",
    "KubeletEnsureSecretPulledImages",
    "KubeletFineGrainedAuthz",
    "KubeletInUserNamespace",
    "KubeletPodResourcesDynamicResources",
    "KubeletPodResourcesGet",
    "KubeletRegistrationGetOnExistsOnly",
    "KubeletSeparateDiskGC",
    "KubeletTracing",
    "LoadBalancerIPMode",
    "LocalStorageCapacityIsolationFSQuotaMonitoring",
    "LogarithmicScaleDown",
    "LoggingAlphaOptions",
    "LoggingBetaOptions",
    "MatchLabelKeysInPodAffinity",
    "MatchLabelKeysInPodTopologySpread",
    "MaxUnavailableStatefulSet",
    "MemoryManager",
    "MemoryQoS",
    "MultiCIDRServiceAllocator",
    "NFTablesProxyMode",
    "NodeInclusionPolicyInPodTopologySpread",
    "NodeLogQuery",
    "NodeSwap",
    "PDBUnhealthyPodEvictionPolicy",
    "PersistentVolumeLastPhaseTransitionTime",
    "PodAndContainerStatsFromCRI",
    "PodDeletionCost",
    "PodDisruptionConditions",
    "PodHostIPs",
    "PodIndexLabel",
    "PodLifecycleSleepAction",
    "PodReadyToStartContainersCondition",
    "PodSchedulingReadiness",
    "PortForwardWebsockets",
    "ProcMountType",
    "QOSReserved",
    "RecoverVolumeExpansionFailure",
    "RecursiveReadOnlyMounts",
    "RelaxedDNSSearchValidation",
    "RelaxedEnvironmentVariableValidation",
    "ReloadKubeletServerCertificateFile",
    "ResourceHealthStatus",
    "RotateKubeletServerCertificate",
    "RuntimeClassInImageCriApi",
    "SELinuxChangePolicy",
    "SELinuxMount",
    "SELinuxMountReadWriteOncePod",
    "SchedulerQueueingHints",
    "SeparateTaintEvictionController",
    "ServiceAccountTokenJTI",
    "ServiceAccountTokenNodeBinding",
    "ServiceAccountTokenNodeBindingValidation",
    "ServiceAccountTokenPodNodeInfo",
    "ServiceTrafficDistribution",
    "SidecarContainers",
    "SizeMemoryBackedVolumes",
    "StatefulSetAutoDeletePVC",
    "StatefulSetStartOrdinal",
    "StorageNamespaceIndex",
    "StorageVersionMigrator",
    "SupplementalGroupsPolicy",
    "TopologyAwareHints",
    "TopologyManagerPolicyAlphaOptions",
    "TopologyManagerPolicyBetaOptions",
    "TopologyManagerPolicyOptions",
    "TranslateStreamCloseWebsocketRequests",
    "UnknownVersionInteroperabilityProxy",
    "UserNamespacesPodSecurityStandards",
    "UserNamespacesSupport",
    "VolumeAttributesClass",
    "VolumeCapacityPriority",
    "WatchListClient",
    "WinDSR",
    "WinOverlay",
    "WindowsHostNetwork",
];

/// Gates removed before 1.30, with the last minor version that knows them (kubernetes/website
/// content/en/docs/reference/command-line-tools-reference/feature-gates/<name>.md, `removed:
/// true`; the last stage's `toVersion`). They are common in configurations written for
/// older clusters; a kubelet newer than that version refuses them as unrecognized.
pub const REMOVED_GATES: &[(&str, KubeletMinor)] = &[
    ("DevicePlugins", 27),
    ("DownwardAPIHugePages", 28),
    ("DynamicKubeletConfig", 25),
    ("KubeletCredentialProviders", 28),
    ("KubeletPodResources", 29),
    ("LocalStorageCapacityIsolation", 26),
    ("RotateKubeletClientCertificate", 21),
    ("SeccompDefault", 28),
];

/// What validation found: the rules the kubelet refuses the configuration by (empty when
/// it would start), and warnings about what nodeproof could not decide.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validation {
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<Warning>,
}

/// The setting at `path` when its value is known (a value that cannot be known is not
/// validated).
fn known<'a>(eff: &'a Effective, path: &str) -> Option<&'a Setting> {
    eff.lookup(path).ok()
}

fn from(s: &Setting) -> String {
    match s.source {
        nodeproof_proto::Source::Default => format!("(the default: {})", s.origin),
        _ => format!("(set by {})", s.origin),
    }
}

/// Validates the effective configuration as the kubelet does before it serves.
/// `minor` is the kubelet's minor version when known: it decides whether a gate removed
/// before 1.30 ([`REMOVED_GATES`]) is refused, and is named in messages.
pub fn validate(eff: &Effective, minor: Option<KubeletMinor>) -> Validation {
    let mut out = Validation::default();
    let mut refuse = |function: &'static str, rule: String| {
        out.refusals.push(Refusal { function, rule });
    };

    // Feature gates first: server.go applies --feature-gates with SetFromMap before
    // anything else, and ValidateKubeletConfiguration starts with SetFromMap of the
    // merged map; both stop at an unknown name.
    let mut unknown_gates = Vec::new();
    for (path, s) in eff.settings.range("featureGates.".to_string()..) {
        let Some(name) = path.strip_prefix("featureGates.") else {
            break;
        };
        if KNOWN_GATES.contains(&name) {
            continue;
        }
        if let Some((_, last)) = REMOVED_GATES.iter().find(|(g, _)| *g == name) {
            match minor {
                Some(m) if m > *last => refuse(
                    SET_FROM_MAP,
                    format!(
                        "unrecognized feature gate: {name} {}; the gate was removed after \
                         Kubernetes 1.{last} and this kubelet is 1.{m}: remove it",
                        from(s)
                    ),
                ),
                Some(_) => {}
                None => out.warnings.push(Warning {
                    message: format!(
                        "the feature gate {name} {} was removed after Kubernetes 1.{last}: a \
                         kubelet newer than that refuses to start with it (unrecognized feature \
                         gate), so if this kubelet is newer it is not running with this \
                         configuration; its version is unknown (pass --kubelet-version)",
                        from(s)
                    ),
                    file: None,
                    field: Some(path.clone()),
                }),
            }
            continue;
        }
        let real = KNOWN_GATES
            .iter()
            .chain(REMOVED_GATES.iter().map(|(g, _)| g))
            .find(|g| g.eq_ignore_ascii_case(name));
        if let Some(real) = real {
            refuse(
                SET_FROM_MAP,
                format!(
                    "unrecognized feature gate: {name} {}; gate names are case sensitive, the \
                     gate is spelled {real}",
                    from(s)
                ),
            );
        } else {
            unknown_gates.push(format!("{name} {}", from(s)));
        }
    }
    if !unknown_gates.is_empty() {
        let version =
            minor.map_or_else(|| "this kubelet".to_string(), |m| format!("kubelet 1.{m}"));
        out.warnings.push(Warning {
            message: format!(
                "nodeproof cannot tell whether {version} knows the feature gate(s) {}: they are \
                 not on nodeproof's list. The kubelet refuses to start with a gate name it does \
                 not know (featureGate.SetFromMap), so if the name is wrong the kubelet is not \
                 running with this configuration",
                unknown_gates.join(", ")
            ),
            file: None,
            field: Some("featureGates".to_string()),
        });
    }

    // ValidateKubeletConfiguration, on the fields nodeproof computes.
    let int = |path: &str| known(eff, path).and_then(|s| s.value.as_i64().map(|v| (v, s)));
    for (path, flag) in [
        ("eventBurst", "--event-burst"),
        ("eventRecordQPS", "--event-qps"),
    ] {
        if let Some((v, s)) = int(path) {
            if v < 0 {
                refuse(
                    VALIDATE,
                    format!(
                        "{path} ({flag}) {v} must not be a negative number {}",
                        from(s)
                    ),
                );
            }
        }
    }
    if let Some((v, s)) = int("healthzPort") {
        if v != 0 && !(1..=65535).contains(&v) {
            refuse(
                VALIDATE,
                format!(
                    "healthzPort (--healthz-port) {v} must be between 1 and 65535, inclusive {}",
                    from(s)
                ),
            );
        }
    }
    if let Some((v, s)) = int("port") {
        if !(1..=65535).contains(&v) {
            refuse(
                VALIDATE,
                format!(
                    "port (--port) {v} must be between 1 and 65535, inclusive {}",
                    from(s)
                ),
            );
        }
    }
    if let Some((v, s)) = int("readOnlyPort") {
        if v != 0 && !(1..=65535).contains(&v) {
            refuse(
                VALIDATE,
                format!(
                    "readOnlyPort (--read-only-port) {v} must be between 0 and 65535, inclusive {}",
                    from(s)
                ),
            );
        }
    }
    if let Some(s) = known(eff, "serverTLSBootstrap") {
        if s.value == Value::Bool(true) {
            // Beta and on by default since 1.12, through 1.35.
            let gate = "featureGates.RotateKubeletServerCertificate";
            let gate_on = match eff.settings.get(gate) {
                None if !eff.unknown.contains_key("featureGates") && eff.config_error.is_none() => {
                    Some((true, "the gate's default".to_string()))
                }
                None => None,
                Some(_) => known(eff, gate)
                    .and_then(|g| g.value.as_bool().map(|on| (on, g.origin.clone()))),
            };
            if let Some((false, origin)) = gate_on {
                refuse(
                    VALIDATE,
                    format!(
                        "serverTLSBootstrap true {} requires feature gate \
                         RotateKubeletServerCertificate, which is off (set by {origin})",
                        from(s)
                    ),
                );
            }
        }
    }

    // BuildAuthz: only two modes exist; the empty mode is an error, not a default, when
    // it survives defaulting (a flag `--authorization-mode=` is applied after it).
    if let Some(s) = known(eff, "authorization.mode") {
        match s.value.as_str() {
            Some("Webhook" | "AlwaysAllow") => {}
            Some("") => refuse(
                BUILD_AUTHZ,
                format!("no authorization mode specified {}", from(s)),
            ),
            Some(other) => refuse(
                BUILD_AUTHZ,
                format!(
                    "unknown authorization mode {other} {} (only Webhook and AlwaysAllow \
                     exist, spelled exactly so)",
                    from(s)
                ),
            ),
            None => {}
        }
    }

    // InitializeTLS: every name must be one cliflag knows.
    if let Some(s) = known(eff, "tlsCipherSuites") {
        if let Some(list) = s.value.as_array() {
            for name in list.iter().filter_map(Value::as_str) {
                if !KNOWN_CIPHERS.contains(&name) {
                    refuse(
                        TLS_CIPHERS,
                        format!(
                            "Cipher suite {name} not supported or doesn't exist {}",
                            from(s)
                        ),
                    );
                }
            }
        }
    }
    if let Some(s) = known(eff, "tlsMinVersion") {
        if let Some(v) = s.value.as_str() {
            if !v.is_empty() && !TLS_VERSIONS.contains(&v) {
                refuse(
                    TLS_VERSION,
                    format!(
                        "unknown tls version {v:?} {} (accepted: {})",
                        from(s),
                        TLS_VERSIONS.join(", ")
                    ),
                );
            }
        }
    }

    // GetHostname: the override is trimmed, and a value that trims to nothing is an error
    // (an empty one means "use the hostname" and is fine).
    if let Some(s) = eff.flag("--hostname-override") {
        if let Some(v) = s.value.as_str() {
            if !v.is_empty() && v.trim().is_empty() {
                refuse(
                    GET_HOSTNAME,
                    format!(
                        "empty hostname is invalid: --hostname-override is only whitespace {}",
                        from(s)
                    ),
                );
            }
        }
    }
    out
}

/// The message every check and the report's warning carry when the kubelet refuses the
/// configuration.
pub fn refusal_message(refusals: &[Refusal]) -> String {
    let rules: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    format!(
        "the kubelet refuses this configuration: {}. A running kubelet cannot be running with \
         it: the configuration changed after the kubelet started, or the kubelet is \
         crash-looping; no verdict on it is true",
        rules.join("; ")
    )
}

/// Turns every check into `error` when the kubelet refuses the configuration: flag-only
/// checks (`--hostname-override`) included, since the kubelet these flags belong to is
/// not serving with this configuration either.
pub fn overrule(checks: &mut [CheckResult], eff: &Effective) {
    let Some(message) = &eff.refused else { return };
    for c in checks {
        c.status = Status::Error;
        c.actual = "unknown".to_string();
        c.source = None;
        c.origin = None;
        c.note = message.clone();
    }
}
