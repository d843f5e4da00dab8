package notificationhttp

import "net/http"

// AdminMux is the mux Routes mounts at /v1/admin/, for the route
// check. It only mounts handlers: the nil job queue is never called.
func AdminMux() *http.ServeMux { return adminMux(nil) }
