package realnode

import (
	"io"
	"net"
	"sync"
)

// relay forwards TCP connections from the bridge address to a loopback
// server: miniotest listens on 127.0.0.1 only, pods reach the host only on
// the bridge. SigV4 signs the Host header the client sent, which the relay
// passes through unchanged, so MinIO verifies signatures as if reached
// directly.
type relay struct {
	l    net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

func newRelay(listen, target string) (*relay, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &relay{l: l, open: map[net.Conn]bool{}}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.pipe(c, target)
			}()
		}
	}()
	return r, nil
}

func (r *relay) track(c net.Conn, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.open[c] = true
	} else {
		delete(r.open, c)
	}
}

func (r *relay) pipe(in net.Conn, target string) {
	out, err := net.Dial("tcp", target)
	if err != nil {
		in.Close()
		return
	}
	r.track(in, true)
	r.track(out, true)
	defer func() {
		in.Close()
		out.Close()
		r.track(in, false)
		r.track(out, false)
	}()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(out, in)
	go cp(in, out)
	<-done
	<-done
}

// Addr is host:port on the bridge.
func (r *relay) Addr() string { return r.l.Addr().String() }

// Close stops accepting, ends open connections and waits for them.
func (r *relay) Close() {
	r.l.Close()
	r.mu.Lock()
	for c := range r.open {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
