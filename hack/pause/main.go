// The pod sandbox's process for hack/cluster.sh: what registry.k8s.io/pause does, in Go, so that
// the sandbox image is built on the machine (no registry). It holds the pod's namespaces open,
// sleeping until SIGINT or SIGTERM, and reaps orphaned children (it is PID 1 of the pod when the
// pod shares its process namespace).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

var version = "dev"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println("pause", version)
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
