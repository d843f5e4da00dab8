# One image for every shopfloor binary (compose picks the command).
# Static Go binaries on distroless, non-root.
#   docker build -t shopfloor .
FROM golang:1.26-bookworm AS build
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
      ./deploy/probe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# No ENTRYPOINT: compose runs e.g. ["catalog", "serve"].
