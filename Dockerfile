# syntax=docker/dockerfile:1
# The stsbind image (the manager and the Endpoint sidecar): make docker-build IMG=registry/stsbind:tag
# Builds on the build platform and cross-compiles for the target (buildx
# --platform linux/amd64,linux/arm64 works without emulation).

# The Go version matches go.mod.
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /workspace
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY main.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
COPY webhook/ webhook/
COPY cmd/ cmd/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/manager . && \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/credentials-server ./cmd/credentials-server

# Static, no shell, no package manager; runs as the nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /
COPY --from=builder /out/manager /manager
# The Endpoint-mode sidecar the webhook adds to pods: same image, small binary.
COPY --from=builder /out/credentials-server /credentials-server
USER 65532:65532
ENTRYPOINT ["/manager"]
