package httpapi

import "net/http"

// ErrNotFound is the error of an unknown resource (404 not_found), for
// handlers mounted beside the API, such as the ops console.
var ErrNotFound = errNotFound

// AuthorizeAdmin checks that r carries the admin token, for handlers
// mounted beside the API; its error answers 401 through WriteError.
func (s *Server) AuthorizeAdmin(r *http.Request) error { return s.auth.admin(r) }

// WriteError answers err as problem+json through the API's one table from
// errors to status and code, for handlers mounted beside the API.
func (s *Server) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeError(w, r, err, nil)
}
