package node

import (
	"io"
	"net"
	"sync"
)

// Relay forwards TCP connections from the bridge address to a loopback
// server, for servers that listen on 127.0.0.1 only (miniotest): pods reach
// the host only on the bridge. Bytes pass unchanged, so a SigV4 signature
// over the Host header the client sent verifies at the server.
type Relay struct {
	l    net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

// NewRelay listens on the bridge address (a free port) and forwards to target.
func (n *Node) NewRelay(target string) (*Relay, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(n.Network.Gateway.String(), "0"))
	if err != nil {
		return nil, err
	}
	r := &Relay{l: l, open: map[net.Conn]bool{}}
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

func (r *Relay) track(c net.Conn, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.open[c] = true
	} else {
		delete(r.open, c)
	}
}

func (r *Relay) pipe(in net.Conn, target string) {
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
func (r *Relay) Addr() string { return r.l.Addr().String() }

// Close stops accepting, ends open connections and waits for them.
func (r *Relay) Close() {
	r.l.Close()
	r.mu.Lock()
	for c := range r.open {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
