//! The kubelet's configuration surface, as data: every field of `KubeletConfiguration`
//! (`kubelet.config.k8s.io/v1beta1`) and every command-line flag the kubelet accepts, for
//! Kubernetes 1.30 through 1.35 (the union of those releases).
//!
//! Why it exists: to compute the effective settings exactly as the kubelet does we must know
//! (a) which config-file fields are real, what Go type they decode into and whether they are
//! Go pointers (an explicit zero/false in a pointer field survives defaulting, in a non-pointer
//! field it is replaced by the default), and (b) which flags pflag accepts, how it parses each
//! one, and which config field a flag overrides. An incomplete table would make us flag valid
//! files ("unknown field") or valid command lines ("unknown flag"); a running kubelet had a
//! valid command line, so a flag missing here is our bug.
//!
//! # Where the data came from (kubernetes/kubernetes unless stated)
//! - `staging/src/k8s.io/kubelet/config/v1beta1/types.go` @ `001332b0422071acf4860769f18e34b5e9b7c1bc`,
//!   a post-1.35 main-branch copy (it already has the 1.36 field `tlsCurvePreferences`). JSON
//!   names, Go types and pointer-ness are taken from it field by field. No field present in
//!   1.30 has been removed since, so the union is this file; fields added after 1.30 are
//!   marked below.
//! - `staging/src/k8s.io/component-base/logs/api/v1/types.go` @ `008b3652959ca58af8be3fb5b6ecfe9ae7638282`
//!   (`logging`) and `staging/src/k8s.io/component-base/tracing/api/v1/types.go`
//!   @ `47e7d8034ff3be8e198dde6a671d05a11c30e333` (`tracing`).
//! - `cmd/kubelet/app/options/options.go` in two versions: @ `6785e9ed401a526cfb4ae33d498b088e27237ad1`
//!   (1.29/1.30 era: has `--config-dir`, `--keep-terminated-pod-volumes`, `--register-schedulable`,
//!   `--cloud-config`, `--iptables-*-bit`) and a 1.35 copy (no `--pod-infra-container-image`,
//!   has `--fail-cgroupv1`) read from the fork `blitzy-public-samples/blitzy-kubernetes`
//!   @ `8aa0d21728035bb577c0715722d5c075ce6976ef` (its flag registrations are upstream's; that fork
//!   edited `applyLegacyDefaults`, which this module does not use). `KubeletFlags.AddFlags` gives
//!   the flag-only flags, `AddKubeletConfigFlags` the config-backed ones.
//! - `cmd/kubelet/app/server.go` (same fork, @ `324166d12a4edd7285bb6c3db6618704188f3e06`):
//!   the flag set is `KubeletFlags.AddFlags` + `AddKubeletConfigFlags` + `AddGlobalFlags` +
//!   `BoolP("help", "h")`, normalized with `cliflag.WordSepNormalizeFunc` (`_` reads as `-`).
//! - `cmd/kubelet/app/options/globalflags_linux.go` (post-dockershim version): the cAdvisor
//!   flags. They were dropped only after 1.36 (kubernetes/kubernetes#139870).
//! - `staging/src/k8s.io/component-base/logs/api/v1/options.go` @ `02efe09abe36ae173e70387413a5ba9e6cff1184`
//!   (`logsapi.AddFlags`: `--logging-format`, `--log-flush-frequency`, `-v`, `--vmodule`, and the
//!   `--log-json-*` flags when the JSON format is registered, which the kubelet binary does).
//!   The legacy klog flags (`--logtostderr`, `--alsologtostderr`, `--log-dir`, `--log-file`,
//!   `--stderrthreshold`, `--skip-headers`, ...) were removed in 1.26 (kubernetes/kubernetes#112120),
//!   so none of them exist in 1.30+.
//! - kubernetes/website `content/en/docs/reference/command-line-tools-reference/kubelet.md`
//!   @ `00cce4136eb6507551a29d29715ff10b463cc5ad`: the generated `kubelet --help` of 1.34 (cross-check;
//!   it lacks the cAdvisor flags because it was generated off Linux, and the `--log-json-*` flags).
//! - Release facts from kubernetes/kubernetes issues and changelogs: `--azure-container-registry-config`
//!   is an unknown flag from 1.30 on (so it is not listed); `--keep-terminated-pod-volumes` was
//!   removed in 1.31; `--fail-cgroupv1` was added in 1.31; `--register-schedulable` was removed by
//!   kubernetes/kubernetes#122384 (merged 2025, 1.33); `--pod-infra-container-image` was removed in
//!   1.35 (kubernetes/kubernetes#133779).

/// The Go type of a KubeletConfiguration field, as far as decoding cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int32,
    Int64,
    /// Only `logging.verbosity` (`VerbosityLevel uint32`).
    Uint32,
    /// Only `memoryThrottlingFactor`.
    Float64,
    String,
    /// `metav1.Duration`: a JSON string in Go duration syntax.
    Duration,
    /// `[]string`.
    StringList,
    /// `map[string]string`.
    StringMap,
    /// `map[string]bool` (`featureGates`).
    BoolMap,
    /// A nested struct whose fields are all listed.
    Struct(&'static [Field]),
    /// Anything else (lists of structs, `map[string][]string`, quantities, taints, `[]int32`,
    /// a string-or-integer duration): accepted as is, not walked.
    Opaque,
}

/// One field of a (possibly nested) KubeletConfiguration struct. (`PartialEq`/`Eq` are
/// needed because `Kind::Struct` holds fields and `Kind` is `Eq`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The JSON name (case sensitive).
    pub name: &'static str,
    pub kind: Kind,
    /// Go pointer type: an explicit zero/false is kept, not defaulted.
    pub pointer: bool,
}

/// How pflag parses a flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// Never takes the next token; a bare `--name` means true.
    Bool,
    Int32,
    /// Also Go `int` flags (cAdvisor's), which are 64-bit on the kubelet's platforms.
    Int64,
    /// Only `-v`/`--v` (klog verbosity, an unsigned number).
    Uint32,
    /// No kubelet flag has this kind in 1.30-1.35; kept for completeness.
    Float64,
    String,
    Duration,
    /// Comma-separated; the first use replaces the default, later uses append.
    StringList,
    /// `k=v,k2=v2`; the first use clears the map, later uses add keys. Note:
    /// `--eviction-hard` and `--eviction-soft` separate key and value with `<`
    /// (`memory.available<100Mi`), not `=`.
    StringMap,
    /// `--feature-gates A=true,B=false`.
    BoolMap,
    /// Anything pflag parses another way (quantity maps, taints, enums, one-pair-per-use
    /// maps); the value is kept as a string.
    Other,
}

/// One command-line flag of the kubelet. (`PartialEq`/`Eq` so that structs holding a
/// `&'static Flag` can derive them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// Without dashes: "read-only-port".
    pub name: &'static str,
    /// 'v' for --v.
    pub shorthand: Option<char>,
    pub kind: FlagKind,
    /// The v1beta1 JSON path of the KubeletConfiguration field this flag sets, when it is
    /// config-backed ("readOnlyPort", "authentication.anonymous.enabled", "featureGates").
    /// None for flag-only (KubeletFlags) and global (cAdvisor, version, help) flags.
    pub config: Option<&'static str>,
    /// Deprecated flags still accepted (pflag prints a warning): the deprecation text.
    pub deprecated: Option<&'static str>,
}

// ---- fields -------------------------------------------------------------------------------

const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        pointer: false,
    }
}

const fn p(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        pointer: true,
    }
}

use Kind::{
    Bool as B, BoolMap, Duration as D, Float64, Int32 as I32, Int64 as I64, Opaque, String as S,
    StringList, StringMap, Struct, Uint32,
};

/// `KubeletX509Authentication`.
const AUTHN_X509: &[Field] = &[f("clientCAFile", S)];
/// `KubeletWebhookAuthentication`.
const AUTHN_WEBHOOK: &[Field] = &[p("enabled", B), f("cacheTTL", D)];
/// `KubeletAnonymousAuthentication`.
const AUTHN_ANONYMOUS: &[Field] = &[p("enabled", B)];
/// `KubeletAuthentication`: all three sub-structs are values, not pointers.
const AUTHENTICATION: &[Field] = &[
    f("x509", Struct(AUTHN_X509)),
    f("webhook", Struct(AUTHN_WEBHOOK)),
    f("anonymous", Struct(AUTHN_ANONYMOUS)),
];

/// `KubeletWebhookAuthorization`.
const AUTHZ_WEBHOOK: &[Field] = &[f("cacheAuthorizedTTL", D), f("cacheUnauthorizedTTL", D)];
/// `KubeletAuthorization`: `mode` is a plain (non-pointer) string, "" defaults to Webhook.
const AUTHORIZATION: &[Field] = &[f("mode", S), f("webhook", Struct(AUTHZ_WEBHOOK))];

/// component-base `OutputRoutingOptions` (inlined into `TextOptions` and `JSONOptions`).
const LOGGING_OUTPUT_ROUTING: &[Field] = &[
    f("splitStream", B),
    // resource.QuantityValue: a quantity string or a number.
    f("infoBufferSize", Opaque),
];
/// component-base `FormatOptions`.
const LOGGING_OPTIONS: &[Field] = &[
    f("text", Struct(LOGGING_OUTPUT_ROUTING)),
    f("json", Struct(LOGGING_OUTPUT_ROUTING)),
];
/// component-base `LoggingConfiguration` (k8s.io/component-base/logs/api/v1).
const LOGGING: &[Field] = &[
    f("format", S),
    // TimeOrMetaDuration: a duration string ("5s") or an integer number of nanoseconds.
    f("flushFrequency", Opaque),
    f("verbosity", Uint32),
    // VModuleConfiguration: a list of {filePattern, verbosity}.
    f("vmodule", Opaque),
    f("options", Struct(LOGGING_OPTIONS)),
];

/// component-base `TracingConfiguration` (k8s.io/component-base/tracing/api/v1).
const TRACING: &[Field] = &[p("endpoint", S), p("samplingRatePerMillion", I32)];

/// `MemorySwapConfiguration`.
const MEMORY_SWAP: &[Field] = &[f("swapBehavior", S)];

/// `CrashLoopBackOffConfig` (1.32+).
const CRASH_LOOP_BACK_OFF: &[Field] = &[p("maxContainerRestartPeriod", D)];

/// `UserNamespaces`.
const USER_NAMESPACES: &[Field] = &[p("idsPerPod", I64)];

/// Top-level fields of KubeletConfiguration, including TypeMeta's `apiVersion` and `kind`,
/// in the order of types.go.
pub static KUBELET_CONFIGURATION: &[Field] = &[
    f("apiVersion", S),
    f("kind", S),
    p("enableServer", B),
    f("staticPodPath", S),
    f("podLogsDir", S),
    f("syncFrequency", D),
    f("fileCheckFrequency", D),
    f("httpCheckFrequency", D),
    f("staticPodURL", S),
    // map[string][]string
    f("staticPodURLHeader", Opaque),
    f("address", S),
    f("port", I32),
    f("readOnlyPort", I32),
    f("tlsCertFile", S),
    f("tlsPrivateKeyFile", S),
    f("tlsCipherSuites", StringList),
    // []int32. Added in 1.36 (not in 1.30-1.35); kept so newer files are not flagged.
    f("tlsCurvePreferences", Opaque),
    f("tlsMinVersion", S),
    f("rotateCertificates", B),
    f("serverTLSBootstrap", B),
    f("authentication", Struct(AUTHENTICATION)),
    f("authorization", Struct(AUTHORIZATION)),
    p("registryPullQPS", I32),
    f("registryBurst", I32),
    // Added after 1.30 (KubeletEnsureSecretPulledImages, 1.33).
    f("imagePullCredentialsVerificationPolicy", S),
    // Added after 1.30 (with the field above, 1.33).
    f("preloadedImagesVerificationAllowlist", StringList),
    p("eventRecordQPS", I32),
    f("eventBurst", I32),
    p("enableDebuggingHandlers", B),
    f("enableContentionProfiling", B),
    p("healthzPort", I32),
    f("healthzBindAddress", S),
    p("oomScoreAdj", I32),
    f("clusterDomain", S),
    f("clusterDNS", StringList),
    f("streamingConnectionIdleTimeout", D),
    f("nodeStatusUpdateFrequency", D),
    f("nodeStatusReportFrequency", D),
    f("nodeLeaseDurationSeconds", I32),
    f("imageMinimumGCAge", D),
    f("imageMaximumGCAge", D),
    p("imageGCHighThresholdPercent", I32),
    p("imageGCLowThresholdPercent", I32),
    f("volumeStatsAggPeriod", D),
    f("kubeletCgroups", S),
    f("systemCgroups", S),
    f("cgroupRoot", S),
    p("cgroupsPerQOS", B),
    f("cgroupDriver", S),
    f("cpuManagerPolicy", S),
    // Added after 1.30 (1.32).
    p("singleProcessOOMKill", B),
    f("cpuManagerPolicyOptions", StringMap),
    f("cpuManagerReconcilePeriod", D),
    // Added after 1.30; release not pinned (absent from the 1.29/1.30-era sources).
    f("draManagerReconcilePeriod", D),
    f("memoryManagerPolicy", S),
    f("topologyManagerPolicy", S),
    f("topologyManagerScope", S),
    f("topologyManagerPolicyOptions", StringMap),
    f("qosReserved", StringMap),
    f("runtimeRequestTimeout", D),
    f("hairpinMode", S),
    f("maxPods", I32),
    f("podCIDR", S),
    p("podPidsLimit", I64),
    // *string: an explicit "" (disable DNS lookups) is kept.
    p("resolvConf", S),
    f("runOnce", B),
    p("cpuCFSQuota", B),
    p("cpuCFSQuotaPeriod", D),
    p("nodeStatusMaxImages", I32),
    f("maxOpenFiles", I64),
    f("contentType", S),
    p("kubeAPIQPS", I32),
    f("kubeAPIBurst", I32),
    p("serializeImagePulls", B),
    p("maxParallelImagePulls", I32),
    f("evictionHard", StringMap),
    f("evictionSoft", StringMap),
    f("evictionSoftGracePeriod", StringMap),
    f("evictionPressureTransitionPeriod", D),
    f("evictionMaxPodGracePeriod", I32),
    f("evictionMinimumReclaim", StringMap),
    // Added after 1.30; release not pinned (third-party notes say 1.35).
    p("mergeDefaultEvictionSettings", B),
    f("podsPerCore", I32),
    p("enableControllerAttachDetach", B),
    f("protectKernelDefaults", B),
    p("makeIPTablesUtilChains", B),
    // Deprecated, no effect; the fields stay although their flags were removed.
    p("iptablesMasqueradeBit", I32),
    p("iptablesDropBit", I32),
    f("featureGates", BoolMap),
    p("failSwapOn", B),
    f("memorySwap", Struct(MEMORY_SWAP)),
    f("containerLogMaxSize", S),
    p("containerLogMaxFiles", I32),
    p("containerLogMaxWorkers", I32),
    p("containerLogMonitorInterval", D),
    f("configMapAndSecretChangeDetectionStrategy", S),
    f("systemReserved", StringMap),
    f("kubeReserved", StringMap),
    f("reservedSystemCPUs", S),
    f("showHiddenMetricsForVersion", S),
    f("systemReservedCgroup", S),
    f("kubeReservedCgroup", S),
    f("enforceNodeAllocatable", StringList),
    f("allowedUnsafeSysctls", StringList),
    f("volumePluginDir", S),
    f("providerID", S),
    f("kernelMemcgNotification", B),
    f("logging", Struct(LOGGING)),
    p("enableSystemLogHandler", B),
    p("enableSystemLogQuery", B),
    f("shutdownGracePeriod", D),
    f("shutdownGracePeriodCriticalPods", D),
    // []ShutdownGracePeriodByPodPriority {priority int32, shutdownGracePeriodSeconds int64}
    f("shutdownGracePeriodByPodPriority", Opaque),
    // Added after 1.30 (KubeletCrashLoopBackOffMax, 1.32).
    f("crashLoopBackOff", Struct(CRASH_LOOP_BACK_OFF)),
    // []MemoryReservation {numaNode int32, limits ResourceList}
    f("reservedMemory", Opaque),
    p("enableProfilingHandler", B),
    p("enableDebugFlagsHandler", B),
    // The file's half of seccomp: effective = `--seccomp-default` (flag-only) OR this.
    p("seccompDefault", B),
    p("memoryThrottlingFactor", Float64),
    // Added in 1.36 (not in 1.30-1.35); kept so newer files are not flagged.
    f("memoryReservationPolicy", S),
    // []v1.Taint
    f("registerWithTaints", Opaque),
    p("registerNode", B),
    p("tracing", Struct(TRACING)),
    p("localStorageCapacityIsolation", B),
    f("containerRuntimeEndpoint", S),
    f("imageServiceEndpoint", S),
    // Added in 1.31.
    p("failCgroupV1", B),
    // Added after 1.30; release not pinned.
    p("userNamespaces", Struct(USER_NAMESPACES)),
];

/// The field at a dotted JSON path ("authentication.webhook.cacheTTL"), walking nested
/// structs. Names are case sensitive, as in the kubelet's strict decoding.
pub fn lookup_field(path: &str) -> Option<&'static Field> {
    let mut fields: &'static [Field] = KUBELET_CONFIGURATION;
    let mut parts = path.split('.').peekable();
    loop {
        let part = parts.next()?;
        let field = fields.iter().find(|f| f.name == part)?;
        if parts.peek().is_none() {
            return Some(field);
        }
        match field.kind {
            Kind::Struct(sub) => fields = sub,
            _ => return None,
        }
    }
}

// ---- flags --------------------------------------------------------------------------------

/// The text `AddKubeletConfigFlags` puts on every config-backed flag (set in a deferred
/// `VisitAll`, so it also replaces any message a flag was marked with before), except on
/// `v`, `vmodule`, `log-flush-frequency`, `provider-id` and (1.31+) `fail-cgroupv1`.
pub const CONFIG_FLAG_DEPRECATION: &str = "This parameter should be set via the config file specified by the Kubelet's --config flag. See https://kubernetes.io/docs/tasks/administer-cluster/kubelet-config-file/ for more information.";

/// The text globalflags_linux.go puts on the cAdvisor flags (all but `housekeeping-interval`).
pub const CADVISOR_FLAG_DEPRECATION: &str = "This is a cadvisor flag that was mistakenly registered with the Kubelet. Due to legacy concerns, it will follow the standard CLI deprecation timeline before being removed.";

const EVICTION_INSTEAD: &str =
    "Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.";
const FUTURE_VERSION: &str = "will be removed in a future version";

/// Config-backed, deprecated (the usual case).
const fn cfg(name: &'static str, kind: FlagKind, path: &'static str) -> Flag {
    Flag {
        name,
        shorthand: None,
        kind,
        config: Some(path),
        deprecated: Some(CONFIG_FLAG_DEPRECATION),
    }
}

/// Config-backed, not deprecated.
const fn cfg_kept(name: &'static str, kind: FlagKind, path: &'static str) -> Flag {
    Flag {
        name,
        shorthand: None,
        kind,
        config: Some(path),
        deprecated: None,
    }
}

/// Flag-only (KubeletFlags or global), not deprecated.
const fn only(name: &'static str, kind: FlagKind) -> Flag {
    Flag {
        name,
        shorthand: None,
        kind,
        config: None,
        deprecated: None,
    }
}

/// Flag-only, deprecated.
const fn only_dep(name: &'static str, kind: FlagKind, message: &'static str) -> Flag {
    Flag {
        name,
        shorthand: None,
        kind,
        config: None,
        deprecated: Some(message),
    }
}

/// cAdvisor flag registered deprecated by globalflags_linux.go.
const fn cadvisor(name: &'static str, kind: FlagKind) -> Flag {
    only_dep(name, kind, CADVISOR_FLAG_DEPRECATION)
}

use FlagKind as K;

/// Every flag the kubelet accepts in 1.30-1.35 (union; flags of only some releases are marked).
pub static FLAGS: &[Flag] = &[
    // ---- KubeletFlags (options.go, KubeletFlags.AddFlags): flag-only, never from the file ----
    // ContainerRuntimeOptions (pkg/kubelet/config/flags.go; moved into options.go by 1.35).
    only("runtime-cgroups", K::String),
    // Removed in 1.35. The text is 1.34's; earlier releases said "will be removed in a future release".
    only_dep(
        "pod-infra-container-image",
        K::String,
        "will be removed in 1.35. Image garbage collector will get sandbox image information from CRI.",
    ),
    // 1.34+ also accepts a directory of config files here; still a plain string.
    only("image-credential-provider-config", K::String),
    only("image-credential-provider-bin-dir", K::String),
    // addOSFlags: registered only in Windows builds (osflags_windows.go); Linux builds have none.
    only("windows-service", K::Bool),
    only("windows-priorityclass", K::String),
    only("config", K::String),
    only("config-dir", K::String),
    only("kubeconfig", K::String),
    only("bootstrap-kubeconfig", K::String),
    only("hostname-override", K::String),
    only("node-ip", K::String),
    only("cert-dir", K::String),
    only("cloud-provider", K::String),
    only("root-dir", K::String),
    // In 1.30-1.35 `--seccomp-default` is a KubeletFlags flag (flag-only), not a config-backed
    // flag: it does not set `seccompDefault`. server.go passes
    // `KubeletFlags.SeccompDefault || KubeletConfiguration.SeccompDefault` to the kubelet.
    only("seccomp-default", K::Bool),
    // cliflag.ConfigurationMap: k=v pairs, a key without '=' gets "".
    only("node-labels", K::StringMap),
    only("lock-file", K::String),
    only("exit-on-lock-contention", K::Bool),
    only_dep("minimum-container-ttl-duration", K::Duration, EVICTION_INSTEAD),
    only_dep("maximum-dead-containers-per-container", K::Int32, EVICTION_INSTEAD),
    only_dep("maximum-dead-containers", K::Int32, EVICTION_INSTEAD),
    // Removed in 1.33 (kubernetes/kubernetes#122384).
    only_dep("register-schedulable", K::Bool, FUTURE_VERSION),
    // 1.30 only (removed in 1.31).
    only_dep("keep-terminated-pod-volumes", K::Bool, FUTURE_VERSION),
    only_dep(
        "experimental-mounter-path",
        K::String,
        "will be removed in 1.25 or later. in favor of using CSI.",
    ),
    // Gone by 1.34 (present in the 1.29/1.30-era source, absent from 1.34's --help).
    only_dep(
        "cloud-config",
        K::String,
        "will be removed in 1.25 or later, in favor of removing cloud provider code from Kubelet.",
    ),
    only_dep(
        "experimental-allocatable-ignore-eviction",
        K::Bool,
        "will be removed in 1.25 or later.",
    ),
    // ---- config-backed (options.go, AddKubeletConfigFlags) ----
    cfg("enable-server", K::Bool, "enableServer"),
    cfg("fail-swap-on", K::Bool, "failSwapOn"),
    cfg("pod-manifest-path", K::String, "staticPodPath"),
    cfg("sync-frequency", K::Duration, "syncFrequency"),
    cfg("file-check-frequency", K::Duration, "fileCheckFrequency"),
    cfg("http-check-frequency", K::Duration, "httpCheckFrequency"),
    cfg("manifest-url", K::String, "staticPodURL"),
    // ColonSeparatedMultimapStringString: "a:hello,b:again", repeatable.
    cfg("manifest-url-header", K::Other, "staticPodURLHeader"),
    // utilflag.IPVar: the value must parse as an IP address.
    cfg("address", K::String, "address"),
    cfg("port", K::Int32, "port"),
    cfg("read-only-port", K::Int32, "readOnlyPort"),
    // Added in 1.31; explicitly not deprecated.
    cfg_kept("fail-cgroupv1", K::Bool, "failCgroupV1"),
    cfg("container-runtime-endpoint", K::String, "containerRuntimeEndpoint"),
    cfg("image-service-endpoint", K::String, "imageServiceEndpoint"),
    cfg("anonymous-auth", K::Bool, "authentication.anonymous.enabled"),
    cfg("authentication-token-webhook", K::Bool, "authentication.webhook.enabled"),
    cfg(
        "authentication-token-webhook-cache-ttl",
        K::Duration,
        "authentication.webhook.cacheTTL",
    ),
    cfg("client-ca-file", K::String, "authentication.x509.clientCAFile"),
    cfg("authorization-mode", K::String, "authorization.mode"),
    cfg(
        "authorization-webhook-cache-authorized-ttl",
        K::Duration,
        "authorization.webhook.cacheAuthorizedTTL",
    ),
    cfg(
        "authorization-webhook-cache-unauthorized-ttl",
        K::Duration,
        "authorization.webhook.cacheUnauthorizedTTL",
    ),
    cfg("tls-cert-file", K::String, "tlsCertFile"),
    cfg("tls-private-key-file", K::String, "tlsPrivateKeyFile"),
    cfg("rotate-server-certificates", K::Bool, "serverTLSBootstrap"),
    cfg("tls-cipher-suites", K::StringList, "tlsCipherSuites"),
    cfg("tls-min-version", K::String, "tlsMinVersion"),
    cfg("rotate-certificates", K::Bool, "rotateCertificates"),
    cfg("registry-qps", K::Int32, "registryPullQPS"),
    cfg("registry-burst", K::Int32, "registryBurst"),
    cfg("event-qps", K::Int32, "eventRecordQPS"),
    cfg("event-burst", K::Int32, "eventBurst"),
    cfg("enable-debugging-handlers", K::Bool, "enableDebuggingHandlers"),
    cfg("contention-profiling", K::Bool, "enableContentionProfiling"),
    cfg("healthz-port", K::Int32, "healthzPort"),
    // utilflag.IPVar: the value must parse as an IP address.
    cfg("healthz-bind-address", K::String, "healthzBindAddress"),
    cfg("oom-score-adj", K::Int32, "oomScoreAdj"),
    cfg("cluster-domain", K::String, "clusterDomain"),
    cfg("volume-plugin-dir", K::String, "volumePluginDir"),
    cfg("cluster-dns", K::StringList, "clusterDNS"),
    cfg(
        "streaming-connection-idle-timeout",
        K::Duration,
        "streamingConnectionIdleTimeout",
    ),
    cfg("node-status-update-frequency", K::Duration, "nodeStatusUpdateFrequency"),
    cfg("minimum-image-ttl-duration", K::Duration, "imageMinimumGCAge"),
    cfg("image-gc-high-threshold", K::Int32, "imageGCHighThresholdPercent"),
    cfg("image-gc-low-threshold", K::Int32, "imageGCLowThresholdPercent"),
    cfg("volume-stats-agg-period", K::Duration, "volumeStatsAggPeriod"),
    cfg("feature-gates", K::BoolMap, "featureGates"),
    cfg("kubelet-cgroups", K::String, "kubeletCgroups"),
    cfg("system-cgroups", K::String, "systemCgroups"),
    cfg_kept("provider-id", K::String, "providerID"),
    cfg("cgroups-per-qos", K::Bool, "cgroupsPerQOS"),
    cfg("cgroup-driver", K::String, "cgroupDriver"),
    cfg("cgroup-root", K::String, "cgroupRoot"),
    cfg("cpu-manager-policy", K::String, "cpuManagerPolicy"),
    // MapStringString with NoSplit: one key=value pair per use (no comma splitting).
    cfg("cpu-manager-policy-options", K::Other, "cpuManagerPolicyOptions"),
    cfg("cpu-manager-reconcile-period", K::Duration, "cpuManagerReconcilePeriod"),
    cfg("qos-reserved", K::StringMap, "qosReserved"),
    cfg("topology-manager-policy", K::String, "topologyManagerPolicy"),
    cfg("runtime-request-timeout", K::Duration, "runtimeRequestTimeout"),
    cfg("hairpin-mode", K::String, "hairpinMode"),
    cfg("max-pods", K::Int32, "maxPods"),
    cfg("pod-cidr", K::String, "podCIDR"),
    cfg("pod-max-pids", K::Int64, "podPidsLimit"),
    cfg("resolv-conf", K::String, "resolvConf"),
    cfg("runonce", K::Bool, "runOnce"),
    cfg("cpu-cfs-quota", K::Bool, "cpuCFSQuota"),
    cfg("cpu-cfs-quota-period", K::Duration, "cpuCFSQuotaPeriod"),
    cfg("enable-controller-attach-detach", K::Bool, "enableControllerAttachDetach"),
    cfg("make-iptables-util-chains", K::Bool, "makeIPTablesUtilChains"),
    // Gone by 1.34 (present in the 1.29/1.30-era source, absent from 1.34's --help). Their own
    // MarkDeprecated text ("This flag has no effect ...") is overwritten by the config text.
    cfg("iptables-masquerade-bit", K::Int32, "iptablesMasqueradeBit"),
    cfg("iptables-drop-bit", K::Int32, "iptablesDropBit"),
    cfg("container-log-max-size", K::String, "containerLogMaxSize"),
    cfg("container-log-max-files", K::Int32, "containerLogMaxFiles"),
    cfg("allowed-unsafe-sysctls", K::StringList, "allowedUnsafeSysctls"),
    cfg("node-status-max-images", K::Int32, "nodeStatusMaxImages"),
    cfg("kernel-memcg-notification", K::Bool, "kernelMemcgNotification"),
    cfg(
        "local-storage-capacity-isolation",
        K::Bool,
        "localStorageCapacityIsolation",
    ),
    cfg("max-open-files", K::Int64, "maxOpenFiles"),
    cfg("kube-api-content-type", K::String, "contentType"),
    cfg("kube-api-qps", K::Int32, "kubeAPIQPS"),
    cfg("kube-api-burst", K::Int32, "kubeAPIBurst"),
    cfg("serialize-image-pulls", K::Bool, "serializeImagePulls"),
    // LangleSeparatedMapStringString: "memory.available<100Mi,nodefs.available<10%".
    cfg("eviction-hard", K::StringMap, "evictionHard"),
    // LangleSeparatedMapStringString, as above.
    cfg("eviction-soft", K::StringMap, "evictionSoft"),
    cfg("eviction-soft-grace-period", K::StringMap, "evictionSoftGracePeriod"),
    cfg(
        "eviction-pressure-transition-period",
        K::Duration,
        "evictionPressureTransitionPeriod",
    ),
    cfg("eviction-max-pod-grace-period", K::Int32, "evictionMaxPodGracePeriod"),
    cfg("eviction-minimum-reclaim", K::StringMap, "evictionMinimumReclaim"),
    cfg("pods-per-core", K::Int32, "podsPerCore"),
    cfg("protect-kernel-defaults", K::Bool, "protectKernelDefaults"),
    cfg("reserved-cpus", K::String, "reservedSystemCPUs"),
    cfg("topology-manager-scope", K::String, "topologyManagerScope"),
    // NoSplit (one pair per use) in the 1.29/1.30-era source, comma-splitting in 1.35.
    cfg("topology-manager-policy-options", K::Other, "topologyManagerPolicyOptions"),
    cfg("system-reserved", K::StringMap, "systemReserved"),
    cfg("kube-reserved", K::StringMap, "kubeReserved"),
    cfg("enforce-node-allocatable", K::StringList, "enforceNodeAllocatable"),
    cfg("system-reserved-cgroup", K::String, "systemReservedCgroup"),
    cfg("kube-reserved-cgroup", K::String, "kubeReservedCgroup"),
    // logsapi.AddFlags(&c.Logging, fs), inside AddKubeletConfigFlags: config-backed too.
    cfg("logging-format", K::String, "logging.format"),
    cfg_kept("log-flush-frequency", K::Duration, "logging.flushFrequency"),
    // VerbosityLevelPflag: an unsigned number (klog limits it to int32's range).
    Flag {
        name: "v",
        shorthand: Some('v'),
        kind: K::Uint32,
        config: Some("logging.verbosity"),
        deprecated: None,
    },
    // VModuleConfigurationPflag: "pattern=N,pattern2=M"; the first use replaces the list.
    cfg_kept("vmodule", K::Other, "logging.vmodule"),
    cfg("log-text-split-stream", K::Bool, "logging.options.text.splitStream"),
    // resource.QuantityValue.
    cfg(
        "log-text-info-buffer-size",
        K::Other,
        "logging.options.text.infoBufferSize",
    ),
    // Registered only because the kubelet binary registers the "json" log format.
    cfg("log-json-split-stream", K::Bool, "logging.options.json.splitStream"),
    cfg(
        "log-json-info-buffer-size",
        K::Other,
        "logging.options.json.infoBufferSize",
    ),
    cfg("memory-manager-policy", K::String, "memoryManagerPolicy"),
    // utilflag.ReservedMemoryVar: "0:memory=1Gi,hugepages-1M=2Gi", repeatable.
    cfg("reserved-memory", K::Other, "reservedMemory"),
    cfg("register-node", K::Bool, "registerNode"),
    // utilflag.RegisterWithTaintsVar: "key=value:Effect,...".
    cfg("register-with-taints", K::Other, "registerWithTaints"),
    // ---- global flags (AddGlobalFlags) ----
    // cAdvisor (globalflags_linux.go; Linux builds only). Go flag names with '_' are registered
    // normalized to '-'.
    only("housekeeping-interval", K::Duration),
    // Go `int`.
    cadvisor("application-metrics-count-limit", K::Int64),
    cadvisor("boot-id-file", K::String),
    cadvisor("container-hints", K::String),
    cadvisor("containerd", K::String),
    cadvisor("enable-load-reader", K::Bool),
    cadvisor("event-storage-age-limit", K::String),
    cadvisor("event-storage-event-limit", K::String),
    cadvisor("global-housekeeping-interval", K::Duration),
    cadvisor("log-cadvisor-usage", K::Bool),
    cadvisor("machine-id-file", K::String),
    cadvisor("storage-driver-user", K::String),
    cadvisor("storage-driver-password", K::String),
    cadvisor("storage-driver-host", K::String),
    cadvisor("storage-driver-db", K::String),
    cadvisor("storage-driver-table", K::String),
    cadvisor("storage-driver-secure", K::Bool),
    cadvisor("storage-driver-buffer-duration", K::Duration),
    cadvisor("containerd-namespace", K::String),
    // verflag: a custom value with NoOptDefVal "true", so like a bool it never takes the next
    // token; with '=' it also accepts "raw" and (recent releases) "vX.Y.Z". The kubelet prints
    // the version and exits, so a running kubelet never has it.
    only("version", K::Bool),
    // server.go: cleanFlagSet.BoolP("help", "h", ...).
    Flag {
        name: "help",
        shorthand: Some('h'),
        kind: K::Bool,
        config: None,
        deprecated: None,
    },
];

/// The flag with this name (without dashes). `_` is read as `-`, as the kubelet's
/// `WordSepNormalizeFunc` does; otherwise the match is exact (case sensitive).
pub fn lookup_flag(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| same_normalized(f.name, name))
}

/// The flag with this single-dash shorthand ('v' for `-v`, 'h' for `-h`).
pub fn lookup_shorthand(c: char) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.shorthand == Some(c))
}

/// `given` equals the canonical (hyphenated) `name` once its underscores read as hyphens.
fn same_normalized(name: &str, given: &str) -> bool {
    name.len() == given.len()
        && name
            .bytes()
            .zip(given.bytes())
            .all(|(a, b)| a == if b == b'_' { b'-' } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn field(path: &str) -> &'static Field {
        lookup_field(path).unwrap_or_else(|| panic!("no field {path}"))
    }

    fn flag(name: &str) -> &'static Flag {
        lookup_flag(name).unwrap_or_else(|| panic!("no flag {name}"))
    }

    /// Visits every field list (top level and nested structs) with its path prefix.
    fn walk(prefix: &str, fields: &'static [Field], visit: &mut dyn FnMut(&str, &'static [Field])) {
        visit(prefix, fields);
        for f in fields {
            if let Kind::Struct(sub) = f.kind {
                let path = if prefix.is_empty() {
                    f.name.to_string()
                } else {
                    format!("{prefix}.{}", f.name)
                };
                walk(&path, sub, visit);
            }
        }
    }

    #[test]
    fn no_duplicate_field_names_in_any_struct() {
        walk("", KUBELET_CONFIGURATION, &mut |prefix, fields| {
            assert!(!fields.is_empty(), "empty struct at {prefix:?}");
            let mut seen = HashSet::new();
            for f in fields {
                assert!(seen.insert(f.name), "duplicate field {prefix}.{}", f.name);
                assert!(
                    !f.name.is_empty() && !f.name.contains('.'),
                    "bad name {:?}",
                    f.name
                );
            }
        });
    }

    #[test]
    fn every_nested_field_resolves_by_path() {
        walk("", KUBELET_CONFIGURATION, &mut |prefix, fields| {
            for f in fields {
                let path = if prefix.is_empty() {
                    f.name.to_string()
                } else {
                    format!("{prefix}.{}", f.name)
                };
                let found = field(&path);
                assert_eq!(found.name, f.name);
                assert!(std::ptr::eq(found, f), "{path} resolves to another field");
            }
        });
    }

    #[test]
    fn no_duplicate_flag_names_or_shorthands() {
        let mut names = HashSet::new();
        let mut shorthands = HashSet::new();
        for f in FLAGS {
            assert!(names.insert(f.name), "duplicate flag {}", f.name);
            if let Some(c) = f.shorthand {
                assert!(shorthands.insert(c), "duplicate shorthand {c}");
            }
        }
    }

    #[test]
    fn flag_names_are_canonical() {
        for f in FLAGS {
            assert!(!f.name.is_empty(), "empty flag name");
            assert!(!f.name.starts_with('-'), "{} has dashes", f.name);
            assert!(
                f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{} is not a normalized pflag name",
                f.name
            );
        }
    }

    /// Whether a flag of this kind can set a field of that kind.
    fn compatible(flag: FlagKind, field: Kind) -> bool {
        matches!(
            (flag, field),
            (_, Kind::Opaque)
                | (FlagKind::Other, _)
                | (FlagKind::Bool, Kind::Bool)
                | (FlagKind::Int32, Kind::Int32)
                | (FlagKind::Int64, Kind::Int64)
                | (FlagKind::Uint32, Kind::Uint32)
                | (FlagKind::Float64, Kind::Float64)
                | (FlagKind::String, Kind::String)
                | (FlagKind::Duration, Kind::Duration)
                | (FlagKind::StringList, Kind::StringList)
                | (FlagKind::StringMap, Kind::StringMap)
                | (FlagKind::BoolMap, Kind::BoolMap)
        )
    }

    #[test]
    fn every_config_path_resolves_to_a_compatible_leaf() {
        let mut targets = HashSet::new();
        for fl in FLAGS {
            let Some(path) = fl.config else { continue };
            let fd = lookup_field(path)
                .unwrap_or_else(|| panic!("--{} maps to unknown field {path}", fl.name));
            assert!(
                !matches!(fd.kind, Kind::Struct(_)),
                "--{} maps to a struct",
                fl.name
            );
            assert!(
                compatible(fl.kind, fd.kind),
                "--{} ({:?}) cannot set {path} ({:?})",
                fl.name,
                fl.kind,
                fd.kind
            );
            assert!(targets.insert(path), "two flags set {path}");
        }
    }

    #[test]
    fn config_flags_are_deprecated_except_the_kept_ones() {
        let kept = [
            "v",
            "vmodule",
            "log-flush-frequency",
            "provider-id",
            "fail-cgroupv1",
        ];
        for fl in FLAGS.iter().filter(|f| f.config.is_some()) {
            if kept.contains(&fl.name) {
                assert_eq!(fl.deprecated, None, "--{}", fl.name);
            } else {
                assert_eq!(
                    fl.deprecated,
                    Some(CONFIG_FLAG_DEPRECATION),
                    "--{}",
                    fl.name
                );
            }
        }
    }

    #[test]
    fn flag_lookups() {
        let ro = flag("read-only-port");
        assert_eq!(ro.config, Some("readOnlyPort"));
        assert_eq!(ro.kind, FlagKind::Int32);
        assert!(std::ptr::eq(flag("read_only_port"), ro));
        assert!(lookup_flag("--read-only-port").is_none());
        assert!(lookup_flag("Read-Only-Port").is_none());
        assert!(lookup_flag("read-only").is_none());
        assert!(lookup_flag("").is_none());
        assert!(lookup_flag("no-such-flag").is_none());
        // klog flags removed in 1.26 and the azure flag removed in 1.30 are unknown.
        for gone in [
            "logtostderr",
            "alsologtostderr",
            "log-dir",
            "log-file",
            "azure-container-registry-config",
        ] {
            assert!(lookup_flag(gone).is_none(), "{gone}");
        }

        assert_eq!(flag("housekeeping_interval").name, "housekeeping-interval");
        assert_eq!(
            flag("storage_driver_db").deprecated,
            Some(CADVISOR_FLAG_DEPRECATION)
        );

        assert_eq!(lookup_shorthand('v').map(|f| f.name), Some("v"));
        assert_eq!(lookup_shorthand('h').map(|f| f.name), Some("help"));
        assert!(lookup_shorthand('x').is_none());
        assert_eq!(flag("v").config, Some("logging.verbosity"));
        assert_eq!(flag("help").kind, FlagKind::Bool);
        assert_eq!(flag("version").kind, FlagKind::Bool);
    }

    #[test]
    fn config_backed_flags_map_to_their_fields() {
        let cases = [
            ("tls-cipher-suites", FlagKind::StringList, "tlsCipherSuites"),
            ("feature-gates", FlagKind::BoolMap, "featureGates"),
            ("eviction-hard", FlagKind::StringMap, "evictionHard"),
            (
                "authentication-token-webhook",
                FlagKind::Bool,
                "authentication.webhook.enabled",
            ),
            (
                "client-ca-file",
                FlagKind::String,
                "authentication.x509.clientCAFile",
            ),
            ("authorization-mode", FlagKind::String, "authorization.mode"),
            (
                "anonymous-auth",
                FlagKind::Bool,
                "authentication.anonymous.enabled",
            ),
            (
                "streaming-connection-idle-timeout",
                FlagKind::Duration,
                "streamingConnectionIdleTimeout",
            ),
            (
                "make-iptables-util-chains",
                FlagKind::Bool,
                "makeIPTablesUtilChains",
            ),
            ("event-qps", FlagKind::Int32, "eventRecordQPS"),
            ("rotate-certificates", FlagKind::Bool, "rotateCertificates"),
            (
                "rotate-server-certificates",
                FlagKind::Bool,
                "serverTLSBootstrap",
            ),
            ("pod-max-pids", FlagKind::Int64, "podPidsLimit"),
            (
                "protect-kernel-defaults",
                FlagKind::Bool,
                "protectKernelDefaults",
            ),
            ("tls-cert-file", FlagKind::String, "tlsCertFile"),
            (
                "tls-private-key-file",
                FlagKind::String,
                "tlsPrivateKeyFile",
            ),
            ("tls-min-version", FlagKind::String, "tlsMinVersion"),
            (
                "enable-debugging-handlers",
                FlagKind::Bool,
                "enableDebuggingHandlers",
            ),
            ("enable-server", FlagKind::Bool, "enableServer"),
            ("address", FlagKind::String, "address"),
            ("port", FlagKind::Int32, "port"),
            ("healthz-port", FlagKind::Int32, "healthzPort"),
            (
                "healthz-bind-address",
                FlagKind::String,
                "healthzBindAddress",
            ),
            ("pod-manifest-path", FlagKind::String, "staticPodPath"),
        ];
        for (name, kind, path) in cases {
            let fl = flag(name);
            assert_eq!(fl.kind, kind, "--{name}");
            assert_eq!(fl.config, Some(path), "--{name}");
        }
    }

    #[test]
    fn flag_only_flags_have_no_config_path() {
        for name in [
            "seccomp-default",
            "hostname-override",
            "node-ip",
            "cert-dir",
            "kubeconfig",
            "bootstrap-kubeconfig",
            "node-labels",
            "config",
            "config-dir",
            "root-dir",
            "version",
            "help",
            "housekeeping-interval",
        ] {
            assert_eq!(flag(name).config, None, "--{name}");
        }
        assert_eq!(flag("seccomp-default").kind, FlagKind::Bool);
        assert_eq!(flag("node-labels").kind, FlagKind::StringMap);
    }

    #[test]
    fn field_lookups() {
        assert_eq!(field("apiVersion").kind, Kind::String);
        assert_eq!(field("kind").kind, Kind::String);
        let ttl = field("authentication.webhook.cacheTTL");
        assert_eq!((ttl.kind, ttl.pointer), (Kind::Duration, false));
        assert!(matches!(
            field("authentication.webhook").kind,
            Kind::Struct(_)
        ));
        assert_eq!(field("logging.verbosity").kind, Kind::Uint32);
        assert_eq!(field("logging.options.json.splitStream").kind, Kind::Bool);
        assert_eq!(field("tracing.samplingRatePerMillion").kind, Kind::Int32);
        assert!(lookup_field("").is_none());
        assert!(lookup_field("ReadOnlyPort").is_none());
        assert!(lookup_field("readOnlyPort.x").is_none());
        assert!(lookup_field("authentication.").is_none());
        assert!(lookup_field("authentication.webhook.nope").is_none());
        assert!(lookup_field(".readOnlyPort").is_none());
    }

    #[test]
    fn pointer_ness_matches_types_go() {
        let pointers = [
            "enableServer",
            "authentication.anonymous.enabled",
            "authentication.webhook.enabled",
            "eventRecordQPS",
            "registryPullQPS",
            "makeIPTablesUtilChains",
            "podPidsLimit",
            "seccompDefault",
            "enableDebuggingHandlers",
            "healthzPort",
            "oomScoreAdj",
            "resolvConf",
            "cpuCFSQuotaPeriod",
            "failSwapOn",
            "registerNode",
            "tracing",
            "userNamespaces",
            "memoryThrottlingFactor",
        ];
        for path in pointers {
            assert!(field(path).pointer, "{path} should be a pointer");
        }
        let values = [
            "readOnlyPort",
            "port",
            "rotateCertificates",
            "serverTLSBootstrap",
            "protectKernelDefaults",
            "streamingConnectionIdleTimeout",
            "authorization.mode",
            "authorization.webhook.cacheAuthorizedTTL",
            "authentication.x509.clientCAFile",
            "eventBurst",
            "tlsMinVersion",
            "address",
            "authentication",
            "logging",
        ];
        for path in values {
            assert!(!field(path).pointer, "{path} should not be a pointer");
        }
        assert_eq!(field("podPidsLimit").kind, Kind::Int64);
        assert_eq!(field("eventRecordQPS").kind, Kind::Int32);
        assert_eq!(field("featureGates").kind, Kind::BoolMap);
        assert_eq!(field("evictionHard").kind, Kind::StringMap);
        assert_eq!(field("tlsCipherSuites").kind, Kind::StringList);
        assert_eq!(field("memoryThrottlingFactor").kind, Kind::Float64);
        assert_eq!(field("registerWithTaints").kind, Kind::Opaque);
        assert_eq!(field("shutdownGracePeriodByPodPriority").kind, Kind::Opaque);
    }

    #[test]
    fn nested_structs_are_complete() {
        let names = |path: &str| -> Vec<&'static str> {
            match field(path).kind {
                Kind::Struct(sub) => sub.iter().map(|f| f.name).collect(),
                other => panic!("{path} is {other:?}"),
            }
        };
        assert_eq!(names("authentication"), ["x509", "webhook", "anonymous"]);
        assert_eq!(names("authentication.webhook"), ["enabled", "cacheTTL"]);
        assert_eq!(names("authorization"), ["mode", "webhook"]);
        assert_eq!(
            names("authorization.webhook"),
            ["cacheAuthorizedTTL", "cacheUnauthorizedTTL"]
        );
        assert_eq!(
            names("logging"),
            [
                "format",
                "flushFrequency",
                "verbosity",
                "vmodule",
                "options"
            ]
        );
    }
}
