package paymenthttp

import (
	"log/slog"
	"net/http"

	kithttp "github.com/go-kit/kit/transport/http"
)

// AdminMux is the mux Routes mounts at /v1/admin/, for the route check.
// It only mounts handlers: the nil service and job queue are never called.
func AdminMux(log *slog.Logger) *http.ServeMux {
	return adminMux(nil, nil, log, kithttp.ServerErrorEncoder(errorEncoder(log)))
}
