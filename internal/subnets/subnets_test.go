package subnets

import (
	"net/netip"
	"testing"
)

func TestCarveIsDisjointAndInsideVPC(t *testing.T) {
	for _, vpc := range []string{"10.0.0.0/16", "172.16.0.0/20", "192.168.4.0/22"} {
		for zones := 1; zones <= MaxZones; zones++ {
			p := netip.MustParsePrefix(vpc)
			layouts, err := Carve(p, zones)
			if err != nil {
				t.Fatalf("Carve(%s, %d): %v", vpc, zones, err)
			}
			var all []netip.Prefix
			for _, l := range layouts {
				all = append(all, l.Private, l.Public)
			}
			for i, a := range all {
				if !p.Contains(a.Addr()) || a.Bits() < p.Bits() {
					t.Errorf("%s: subnet %s is outside the VPC", vpc, a)
				}
				if a.Bits() > 28 {
					t.Errorf("%s: subnet %s is smaller than the /28 AWS allows", vpc, a)
				}
				for _, b := range all[i+1:] {
					if a.Overlaps(b) {
						t.Errorf("%s with %d zones: %s overlaps %s", vpc, zones, a, b)
					}
				}
			}
		}
	}
}

func TestCarveKnownLayout(t *testing.T) {
	layouts, err := Carve(netip.MustParsePrefix("10.0.0.0/16"), 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []Layout{
		{netip.MustParsePrefix("10.0.0.0/19"), netip.MustParsePrefix("10.0.224.0/22")},
		{netip.MustParsePrefix("10.0.32.0/19"), netip.MustParsePrefix("10.0.228.0/22")},
		{netip.MustParsePrefix("10.0.64.0/19"), netip.MustParsePrefix("10.0.232.0/22")},
	}
	for i := range want {
		if layouts[i] != want[i] {
			t.Errorf("zone %d: got %v, want %v", i, layouts[i], want[i])
		}
	}
}

func TestCarveRejects(t *testing.T) {
	for _, c := range []struct {
		vpc   string
		zones int
	}{{"10.0.0.0/8", 3}, {"10.0.0.0/24", 3}, {"10.0.0.0/16", 0}, {"10.0.0.0/16", MaxZones + 1}, {"fd00::/56", 3}} {
		if _, err := Carve(netip.MustParsePrefix(c.vpc), c.zones); err == nil {
			t.Errorf("Carve(%s, %d) succeeded, want an error", c.vpc, c.zones)
		}
	}
}
