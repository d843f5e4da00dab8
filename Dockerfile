# One image for every shopfloor binary (compose picks the command).
# Static Go binaries on distroless, non-root.
#   docker build -t shopfloor .
# golang:1.26-bookworm (Go 1.26.7), pinned by digest: docs/supply-chain.md
FROM golang:1.26-bookworm@sha256:38f30937ff0751bd8c202e53556168b9093302ee6d591e7e65a9d1b84a9d360c AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/ \
      ./services/catalog/cmd/catalog \
      ./services/orders/cmd/orders \
      ./services/payments/cmd/payments \
      ./services/notifications/cmd/notifications \
      ./services/search/cmd/search \
      ./services/identity/cmd/identity \
      ./services/web/cmd/web \
      ./deploy/probe \
      ./deploy/pgroles
# Services made by make new-service (tools/newservice), one RUN each.
# new-service: binaries above this line
# identity's key directory (IDENTITY_KEY_DIR in compose), made here because
# distroless has no shell: a named volume mounted on it starts with its
# owner (nonroot) and mode (0700), so identity can write its keys there.
RUN mkdir -p /keys && chmod 0700 /keys

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
COPY --from=build --chown=65532:65532 /keys /var/lib/identity
USER nonroot:nonroot
# No ENTRYPOINT: compose runs e.g. ["catalog", "serve"].
