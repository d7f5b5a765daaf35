//go:build !production

package main

import (
	"github.com/jitfs/jitfs/bench"
	"github.com/jitfs/jitfs/internal/wan"
)

// emulatedWAN builds the bench's link: Toxiproxy for latency and an htb
// qdisc for the aggregate bandwidth cap, inside the private network
// namespace runBench (or runDemo) moved into.
func emulatedWAN(l bench.Link) bench.Network {
	return func(upstream string) (string, func() error, error) {
		s, err := wan.Start(upstream, wan.Link{RTT: l.RTT, Bandwidth: l.Bandwidth}, nil)
		if err != nil {
			return "", nil, err
		}
		return s.Addr(), s.Close, nil
	}
}
