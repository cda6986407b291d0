package rehearsal

import (
	"strings"
	"testing"
	"time"
)

// The Service's error window is the longest run of seconds with failed
// calls: a lone timeout counts one second, an endpoint failing calls for
// 20 s counts 20.
func TestFailingRun(t *testing.T) {
	from := time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)
	at := func(seconds float64) time.Time { return from.Add(time.Duration(seconds * float64(time.Second))) }
	var lostEndpoint []time.Time
	for s := 30.0; s < 50; s += 0.3 {
		lostEndpoint = append(lostEndpoint, at(s))
	}
	for _, c := range []struct {
		name    string
		failing []time.Time
		want    float64
	}{
		{"none", nil, 0},
		{"lone timeouts", []time.Time{at(3.2), at(3.9), at(10.5), at(61)}, 1},
		{"an endpoint lost for 20 s, and timeouts apart", append(lostEndpoint, at(5), at(52), at(53)), 20},
		{"a one-second hole splits a run", []time.Time{at(1), at(2), at(4), at(5), at(6)}, 3},
	} {
		if got := failingRun(c.failing, from); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSelectDrills(t *testing.T) {
	all, err := selectDrills(nil)
	if err != nil || len(all) != len(drills)+1 || all[len(all)-1].name != neverDrill.name {
		t.Fatalf("no names: %d drills (%v), want all %d and drill i", len(all), err, len(drills)+1)
	}
	// Named out of order, run in the usual order.
	some, err := selectDrills([]string{"k", "e", "c"})
	var names []string
	for _, d := range some {
		names = append(names, d.name)
	}
	if err != nil || strings.Join(names, ",") != "c,e,k" {
		t.Errorf("k,e,c: %v (%v), want c,e,k", names, err)
	}
	for list, want := range map[string]string{
		"c":   "c and e go together",
		"e,a": "c and e go together",
		"z":   `no drill "z"; the drills are u, a, b, c, e, d, d-tcp, k, g, h, j, i`,
	} {
		if _, err := selectDrills(strings.Split(list, ",")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", list, err, want)
		}
	}
}
