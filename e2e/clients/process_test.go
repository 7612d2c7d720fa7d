package clients

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/stsbind/stsbind/internal/testrig/podview"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// process is a running client.
type process struct {
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan error
}

func startProcess(t *testing.T, v *podview.View, argv []string) *process {
	t.Helper()
	p := &process{out: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = v.Environ(t.TempDir())
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", argv[0], err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit by deadline, killing it then, and
// returns its output.
func (p *process) wait(t *testing.T, deadline time.Time) (string, error) {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case err := <-p.done:
		p.done <- err
		return p.out.String(), err
	case <-timer.C:
	}
	// A process that exited just now is not one that hung.
	select {
	case err := <-p.done:
		p.done <- err
		return p.out.String(), err
	default:
	}
	_ = p.cmd.Process.Kill()
	t.Errorf("%s still running at %s: killed\n%s", p.cmd.Path, deadline.Format("15:04:05"), p.out.String())
	return p.out.String(), fmt.Errorf("killed at %s", deadline.Format("15:04:05"))
}

// runOnce runs a client with exactly the container's environment.
func runOnce(t *testing.T, v *podview.View, argv []string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = v.Environ(t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}
