package rehearsal

import (
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
