# syntax=docker/dockerfile:1
# The nodeproof agent as a container image: the static binary (scripts/build-static, musl)
# on distroless's "static" base, which holds CA certificates, /etc/passwd with the user
# nonroot (65532) and time zone data, and no shell, package manager or libc.
#
#   docker build -t registry.example.internal/nodeproof-agent:0.1.0 .
#   docker run --rm registry.example.internal/nodeproof-agent:0.1.0 --version
#
# One scan of the host it runs on, with the DaemonSet's privileges and nothing more:
#   docker run --rm --pid=host --user 0 --cap-drop=ALL --cap-add=SYS_PTRACE \
#     --cap-add=DAC_READ_SEARCH --security-opt=no-new-privileges \
#     --security-opt=apparmor=unconfined --read-only -v /proc:/host/proc:ro \
#     registry.example.internal/nodeproof-agent:0.1.0 scan --proc /host/proc
#
# deploy/kubernetes/ runs it as a DaemonSet (docs/install.md, "Kubernetes"). The image's
# user is nonroot; the DaemonSet runs the scanning container as root with every capability
# dropped but CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, the two it needs (the DaemonSet's
# comments say why root). x86-64 only, as scripts/build-static.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches make rebuilds fast; the binary is copied out of the
# cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-static > /tmp/built \
    && install -D -m 0755 "$(tail -n1 /tmp/built)" /out/nodeproof-agent

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/nodeproof-agent /usr/local/bin/nodeproof-agent
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/nodeproof-agent"]
CMD ["--help"]
LABEL org.opencontainers.image.title="nodeproof-agent" \
      org.opencontainers.image.description="Finds the running kubelet, computes its effective settings, checks them against the CIS Kubernetes Benchmark and signs the report." \
      org.opencontainers.image.licenses="Apache-2.0"
