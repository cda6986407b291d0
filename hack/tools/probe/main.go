// Command probe is the rehearsal's workload (internal/workload), the
// kubeha-probe image:
//
//	probe serve ADDR   answers every GET with the pod and node it runs on
//	probe call URL     calls URL every 100 ms and prints one JSON line per answer
//
// Built static by hack/tools.sh.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kubeha/kubeha/internal/workload"
)

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "serve" && os.Args[1] != "call") {
		fmt.Fprintln(os.Stderr, "usage: probe serve ADDR | probe call URL")
		os.Exit(2)
	}
	// The kubelet stops a pod with SIGTERM.
	stop := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-signals; close(stop) }()
	if os.Args[1] == "call" {
		workload.Call(os.Args[2], os.Stdout, stop)
		return
	}
	srv := &http.Server{Addr: os.Args[2], ReadHeaderTimeout: 5 * time.Second,
		Handler: workload.Server(os.Getenv("POD_NAME") + " " + os.Getenv("NODE_NAME"))}
	go func() { <-stop; _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}
