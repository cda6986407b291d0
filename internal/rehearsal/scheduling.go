package rehearsal

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Scheduling is what pods created one after another during a drill met:
// each was created, scheduled, ready and deleted before the next, so that
// a scheduler or API server lost meanwhile shows as a pod that waited.
type Scheduling struct {
	Pods int `json:"pods"`
	// CreateRetries are creations the API refused or never answered,
	// tried again a second later.
	CreateRetries int `json:"createRetries"`
	// LongestScheduledSeconds and LongestReadySeconds are the longest any
	// pod took from its creation to being bound to a node, and to ready
	// (whole seconds: the API's timestamps).
	LongestScheduledSeconds float64 `json:"longestScheduledSeconds"`
	LongestReadySeconds     float64 `json:"longestReadySeconds"`
}

// podReadyLimit is how long a pod created during a drill may take to be
// ready before the drill fails.
const podReadyLimit = 3 * time.Minute

// schedulingPause spaces the pods, so that nine nodes on two CPUs do not
// spend the drill starting containers.
const schedulingPause = 2 * time.Second

// whileScheduling runs a drill while pods are created one after another,
// and adds what they met to its result.
func whileScheduling(run func(context.Context, *cluster, *probe) (Drill, error)) func(context.Context, *cluster, *probe) (Drill, error) {
	return func(ctx context.Context, c *cluster, p *probe) (Drill, error) {
		stop := make(chan struct{})
		done := make(chan error, 1)
		var s Scheduling
		go func() { done <- c.scheduleUntil(ctx, stop, &s) }()
		d, err := run(ctx, c, p)
		close(stop)
		scheduleErr := <-done
		d.Scheduling = &s
		if err == nil && scheduleErr != nil {
			err = fmt.Errorf("pods created during the drill: %w", scheduleErr)
		}
		return d, err
	}
}

// scheduleUntil creates a pod, waits until it is ready, records how long
// that took and deletes it, every schedulingPause until stop; the pod in
// flight when stop comes is seen through.
func (c *cluster) scheduleUntil(ctx context.Context, stop chan struct{}, s *Scheduling) error {
	for n := 1; ; n++ {
		select {
		case <-stop:
			return nil
		case <-time.After(schedulingPause):
		}
		name := fmt.Sprintf("scheduled-%d", n)
		for retried := false; ; retried = true {
			code, body, err := c.lbAdmin.Do(http.MethodPost, "/api/v1/namespaces/default/pods", scheduledPod(name, c.stack.probeImage))
			// A retry may find the pod a lost answer had created.
			if err == nil && (code == http.StatusCreated || (retried && code == http.StatusConflict)) {
				break
			}
			if err == nil && code < 500 && code != http.StatusTooManyRequests {
				return fmt.Errorf("creating pod %s: HTTP %d %.300s", name, code, body)
			}
			s.CreateRetries++
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(time.Second)
		}
		s.Pods++
		var ran pod
		if _, err := c.waitFor("pod "+name+" ready", podReadyLimit, func() error {
			code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/default/pods/"+name, nil)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("HTTP %d %.200s (%v)", code, body, err)
			}
			ran = pod{}
			if err := json.Unmarshal([]byte(body), &ran); err != nil {
				return err
			}
			if r, _ := ready(ran.Status.Conditions); r.Status != "True" {
				return fmt.Errorf("phase %s, conditions %+v", ran.Status.Phase, ran.Status.Conditions)
			}
			return nil
		}); err != nil {
			return err
		}
		created := ran.Metadata.CreationTimestamp
		for _, cond := range ran.Status.Conditions {
			switch took := cond.LastTransitionTime.Sub(created).Seconds(); cond.Type {
			case "PodScheduled":
				s.LongestScheduledSeconds = max(s.LongestScheduledSeconds, took)
			case "Ready":
				s.LongestReadySeconds = max(s.LongestReadySeconds, took)
			}
		}
		if _, err := c.waitFor("pod "+name+" deleted", time.Minute, func() error {
			code, body, err := c.lbAdmin.Do(http.MethodDelete, "/api/v1/namespaces/default/pods/"+name, nil)
			if err != nil || (code != http.StatusOK && code != http.StatusNotFound) {
				return fmt.Errorf("HTTP %d %.200s (%v)", code, body, err)
			}
			return nil
		}); err != nil {
			return err
		}
	}
}

// scheduledPod is a pod of the probe's image that any worker may run,
// gone a second after its deletion.
func scheduledPod(name, image string) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "labels": map[string]any{"app": probeApp + "-scheduled"}},
		"spec": map[string]any{
			"terminationGracePeriodSeconds": 1,
			"containers":                    []any{map[string]any{"name": "server", "image": image, "args": []string{"serve", fmt.Sprintf(":%d", probePort)}}},
		},
	}
}
