// Command credentials-server is the Endpoint-mode sidecar on its own: the
// same server as `stsbind credentials-server`, in a 6 MB binary that starts in
// milliseconds and lives in a few MiB, because it links none of the
// operator's Kubernetes machinery. The operator image ships both; the webhook
// runs this one.
package main

import (
	"os"

	"github.com/stsbind/stsbind/internal/credserver"
)

func main() { os.Exit(credserver.Main(os.Args[1:])) }
