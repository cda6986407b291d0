package lab

import "github.com/kubeha/kubeha/internal/kubeapi"

// API is the rehearsal's client of the Kubernetes API.
type API = kubeapi.API

// Lease is a kube-system Lease's holder and term.
type Lease = kubeapi.Lease

// NewAPI: see kubeapi.NewAPI.
var NewAPI = kubeapi.NewAPI

// LeaderElected are the components that hold a kube-system Lease of
// their own name.
var LeaderElected = kubeapi.LeaderElected
