// Command pause is the pause container of kubeha's rehearsal nodes (the
// registry.k8s.io/pause image the kubelet asks for, which no registry serves
// there): it holds a pod's namespaces and does nothing else, as Kubernetes'
// own pause does. It exits 0 on SIGINT or SIGTERM, reaps the children it
// inherits as PID 1 on SIGCHLD, and otherwise waits forever. Built static
// by hack/tools.sh.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	for _, arg := range os.Args[1:] {
		if strings.EqualFold(arg, "-v") {
			fmt.Println("pause (kubeha)")
			return
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	reap() // children that exited before the handler was set
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
		os.Exit(0)
	}
}

// reap collects every child that has exited, without waiting for others.
func reap() {
	for {
		pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
		if pid <= 0 && err != syscall.EINTR {
			return
		}
	}
}
