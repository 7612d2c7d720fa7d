package drain

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestCloseConnections sends requests over one kept-alive client and counts
// the connections the server accepted: one before the drain, then each
// connection carries only one more request.
func TestCloseConnections(t *testing.T) {
	t.Parallel()
	var flag Flag
	srv := httptest.NewUnstartedServer(CloseConnections(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}), &flag))
	var accepted atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := srv.Client()
	get := func() *http.Response {
		t.Helper()
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
		return resp
	}
	for range 3 {
		if resp := get(); resp.Close {
			t.Fatal("the connection was closed before the drain")
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d connections for three kept-alive requests, want 1", n)
	}
	flag.Set()
	for range 3 {
		if resp := get(); !resp.Close {
			t.Fatal("the response during the drain does not close its connection")
		}
	}
	// The first request of the drain still comes over the old connection,
	// which closes after it; the next two each need a new one.
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections after three requests during the drain, want 1+2", n)
	}
}

func TestNilFlagNeverDrains(t *testing.T) {
	t.Parallel()
	var f *Flag
	if f.Draining() {
		t.Fatal("a nil Flag drains")
	}
}
