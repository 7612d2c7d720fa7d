// Command pause is the sandbox image of the real-node rig: it holds the pod's
// namespaces open and exits on SIGTERM or SIGINT, as registry.k8s.io/pause does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
