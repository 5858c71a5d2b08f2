# syntax=docker/dockerfile:1
#
# The egresswatch node agent image: one static binary on scratch.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse --short HEAD) -t egresswatch:dev .
#
# The binary is pure Go (CGO_ENABLED=0), so the final image needs no libc,
# no shell and no /etc/passwd: the DaemonSet and the unit give the user
# numerically. The only file added besides the binary is the CA bundle, for
# HTTPS to InfluxDB and to alert webhooks.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
# Modules first, so that editing the source does not refetch them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/egresswatch ./cmd/egresswatch

FROM scratch
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="egresswatch" \
      org.opencontainers.image.description="Learns each workload's normal egress on a node and flags departures" \
      org.opencontainers.image.source="https://github.com/egresswatch/egresswatch" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/egresswatch /usr/local/bin/egresswatch
# uid 0 without the root capabilities: the agent opens the containerd socket
# and /proc/PID/ns/net of root-owned tasks, which need uid 0 as owner; the
# DaemonSet drops every capability but the few it needs.
USER 0:0
EXPOSE 9781
ENTRYPOINT ["/usr/local/bin/egresswatch"]
CMD ["run"]
