# syntax=docker/dockerfile:1
#
# One image for the whole cluster: verifierd (the entrypoint), bundlepub,
# tpcurl, tpnats (NATS credentials, stream setup, probes), tpaudit, and the
# nats-server that go.mod requires (per-key TTLs need 2.11 or later, SPEC
# §7), all static. deploy/k8s picks the binary per workload.
#
#   docker build -t tpcluster:0.1.0 .   # deploy/k8s pins an exact version
#
# The build stage's Go matches go.mod's go line.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: no libc in the runtime image.
ENV CGO_ENABLED=0 GOOS=linux
RUN go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/verifierd ./cmd/bundlepub ./cmd/tpcurl ./cmd/tpnats ./cmd/tpaudit && \
    go build -trimpath -ldflags="-s -w" -o /out/nats-server github.com/nats-io/nats-server/v2

# distroless static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/verifierd /out/bundlepub /out/tpcurl /out/tpnats /out/tpaudit /out/nats-server /usr/local/bin/
USER 65532:65532
# verifierd listens on :8081 by default (TPCLUSTER_LISTEN); NATS clients
# 4222 (TLS), routes 6222 when the image runs nats-server; its monitoring
# stays on the pod's loopback (deploy/k8s/nats.conf).
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/verifierd"]
