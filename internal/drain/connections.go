package drain

import (
	"net/http"
	"sync/atomic"
)

// Flag says whether the shutdown delay has begun. Its zero value is not
// draining; Set is safe to call from the notify function of After.
type Flag struct{ on atomic.Bool }

// Set marks the start of the drain.
func (f *Flag) Set() { f.on.Store(true) }

// Draining reports whether Set has been called. A nil Flag never drains.
func (f *Flag) Draining() bool { return f != nil && f.on.Load() }

// CloseConnections answers through h and, once f is draining, closes each
// connection after its response. A kept-alive connection would otherwise
// bring the API server back to this replica until it exits, and the reviews
// sent in the last moment would fail; a new connection goes through the
// Service to a replica that stays.
func CloseConnections(h http.Handler, f *Flag) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.Draining() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
