package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
)

// Admin access rule for the operator API (/api/) and the status page (/):
//
//   - with a token (ops.admin_token_file), every request needs
//     "Authorization: Bearer <token>" (or HTTP Basic with the token as the
//     password, so a browser can open the status page); anything else gets
//     401. The comparison is constant-time.
//   - without a token, the API is served only when the ops listener is
//     bound to a loopback address;
//   - otherwise the API is off: 403 on every admin path.
//
// /healthz, /readyz and /metrics stay open either way.

// ErrNoMux is returned when the server's handler is not the mux New built.
var ErrNoMux = errors.New("ops: handler is not a ServeMux")

// AdminState says how EnableAdmin decided to serve the admin paths.
type AdminState string

// Admin states.
const (
	AdminToken    AdminState = "token"    // bearer token required
	AdminLoopback AdminState = "loopback" // no token; loopback listener
	AdminOff      AdminState = "off"      // no token on a non-loopback listener
)

// EnableAdmin mounts h on /api/ and / behind the access rule. token is the
// admin token ("" for none); Listen must have been called, since the rule
// depends on the bound address. It returns the state chosen; AdminOff is
// also logged as a warning.
func (s *Server) EnableAdmin(h http.Handler, token string) (AdminState, error) {
	mux, ok := s.http.Handler.(*http.ServeMux)
	if !ok {
		return AdminOff, ErrNoMux
	}
	state := AdminLoopback
	switch {
	case token != "":
		state = AdminToken
	case !loopback(s.ln.Addr()):
		state = AdminOff
		s.log.Warn("ops: admin API and status page are off: ops.listen is not a loopback address and ops.admin_token_file is not set",
			"ops", s.ln.Addr().String())
	}
	guarded := AdminGuard(h, state, token)
	mux.Handle("/api/", guarded)
	mux.Handle("/", guarded)
	return state, nil
}

// AdminGuard wraps h with the access rule for state.
func AdminGuard(h http.Handler, state AdminState, token string) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch state {
		case AdminOff:
			writeError(w, http.StatusForbidden, "admin API disabled: ops.listen is not loopback and ops.admin_token_file is not set")
			return
		case AdminToken:
			got, ok := presented(r)
			gh := sha256.Sum256([]byte(got))
			// Compare fixed-size hashes: constant time whatever the length.
			if !ok || subtle.ConstantTimeCompare(gh[:], want[:]) != 1 {
				w.Header().Add("WWW-Authenticate", `Bearer realm="pinhole"`)
				w.Header().Add("WWW-Authenticate", `Basic realm="pinhole"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// presented returns the token a request carries.
func presented(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if scheme, tok, ok := strings.Cut(a, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok), true
	}
	if _, pw, ok := r.BasicAuth(); ok {
		return pw, true
	}
	return "", false
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
