// Package subnets carves a VPC CIDR into per-zone subnets.
package subnets

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// MaxZones is how many zones one VPC layout holds: the VPC is split in
// eighths, seven for private subnets and the last, split again in eighths,
// for the small public ones.
const MaxZones = 7

// The VPC prefix lengths Carve accepts: public subnets must be at least the
// /28 AWS allows.
const (
	MinVPCBits = 16
	MaxVPCBits = 22
)

// Layout is one zone's pair of subnets.
type Layout struct {
	Private netip.Prefix // nodes: large, 1/8 of the VPC
	Public  netip.Prefix // NAT gateways and public load balancers: 1/64 of the VPC
}

// Carve returns one Layout per zone, non-overlapping and inside vpc.
func Carve(vpc netip.Prefix, zones int) ([]Layout, error) {
	if !vpc.Addr().Is4() || vpc.Bits() < MinVPCBits || vpc.Bits() > MaxVPCBits {
		return nil, fmt.Errorf("VPC CIDR %s: need an IPv4 prefix from /%d to /%d", vpc, MinVPCBits, MaxVPCBits)
	}
	if zones < 1 || zones > MaxZones {
		return nil, fmt.Errorf("%d zones: need 1 to %d", zones, MaxZones)
	}
	base := binary.BigEndian.Uint32(vpc.Masked().Addr().AsSlice())
	eighth := uint32(1) << (32 - vpc.Bits() - 3)
	sixtyFourth := eighth >> 3
	layouts := make([]Layout, zones)
	for i := range layouts {
		layouts[i] = Layout{
			Private: prefixAt(base+uint32(i)*eighth, vpc.Bits()+3),
			Public:  prefixAt(base+7*eighth+uint32(i)*sixtyFourth, vpc.Bits()+6),
		}
	}
	return layouts, nil
}

func prefixAt(addr uint32, bits int) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], addr)
	return netip.PrefixFrom(netip.AddrFrom4(b), bits)
}
