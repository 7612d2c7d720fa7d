// Package moto runs moto_server, an independent implementation of the AWS
// STS wire format, on loopback for the end-to-end tests: a second opinion on
// request and answer shapes besides the in-test STS and MinIO. moto checks
// little else (no signatures, any keys), so tests use it for shapes, not for
// security properties.
//
// moto_server comes from the machine's Python (moto 5.2.1 in the pyenv
// Python first on PATH); a missing one is a failure, never a skip.
package moto

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// Server is a running moto_server.
type Server struct {
	// Endpoint is its URL, e.g. http://127.0.0.1:40123.
	Endpoint string
	cmd      *exec.Cmd
	out      *testenv.SyncBuffer
}

// Account is the account moto answers GetCallerIdentity with by default.
const Account = "123456789012"

// Start runs moto_server on a free loopback port and waits until it answers.
func Start(ctx context.Context) (*Server, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("moto_server not found on PATH (moto 5.2.1 of the machine's Python): %w", err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), out: &testenv.SyncBuffer{}}
	s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting moto_server: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/moto-api/data.json")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, fmt.Errorf("moto_server did not answer within 60s: %v\n%s", err, s.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Output is what moto_server printed.
func (s *Server) Output() string { return s.out.String() }

// Stop ends the server (the one process this package started).
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
}
