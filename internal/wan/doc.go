// Package wan puts an emulated wide-area link between jitfs and its GCS
// emulator, for `jitfs bench` and `jitfs demo`: a round-trip time (default 20 ms) and an
// aggregate download bandwidth (default 100 MB/s), both configurable. The
// bench compares jitfs against pre-syncing a scene, and that comparison only
// means something when fetches pay what they pay against real GCS: a round
// trip per request and a shared pipe for the bytes.
//
// The link is built from existing tools rather than a home-made pacer:
//
//   - Latency: Toxiproxy (github.com/Shopify/toxiproxy/v2), in-process, as a
//     TCP proxy on 127.0.0.1 in front of the emulator, with a latency toxic
//     of RTT/2 on each direction. A request therefore waits RTT before its
//     first reply byte, on every connection.
//   - Bandwidth: Linux traffic control, an htb qdisc on the loopback device.
//     Toxiproxy's own bandwidth toxic paces each connection separately, so N
//     parallel downloads would get N times the cap; a WAN link is one pipe
//     that all connections share, which is what a single htb class gives.
//     netem would do both jobs, but it is not built into the kernels of the
//     machines this runs on; htb and the u32 classifier are.
//
// # Network namespace
//
// Shaping the host's loopback would slow every local service on the machine,
// and a crash would leave the qdisc behind. So the shaping happens only in a
// private network namespace: [Reexec] runs the program again inside a new one
// (CLONE_NEWNET) and the parent just relays signals and the exit status. In
// there the loopback device is this process's alone and disappears with it,
// qdisc included, however the process ends. Only the network is private: the
// mount namespace, the file system, /dev/fuse and the process tree are the
// host's, so FUSE mounts made inside are visible outside and files written to
// /tmp are the host's files. [Start] refuses to shape outside the namespace.
//
// The class caps only what leaves the proxy's listening port, that is, the
// bytes clients download through [Shaper.Addr]; uploads, the emulator's own
// port (so a bench can seed it at full speed) and all other loopback traffic
// bypass it through htb's direct queue. Loopback's MTU is 64 KiB and TCP
// hands it segments that large, so the class's burst is at least two such
// packets (tc's default assumes 1600-byte ones) and its quantum one. In
// measurement htb reached 0.99 of its rate with these settings, and no more
// with tc's defaults or a 1 MiB burst: what falls short of the cap is the
// proxy running out of CPU, not htb.
//
// # Usage
//
// Reexec runs the whole program a second time, so a command parses and
// validates its flags (no side effects: a bad flag or -h then prints once,
// from the parent, and no child starts), then calls Reexec before it
// creates files, starts servers or mounts anything:
//
//	link := wan.DefaultLink()
//	fs.DurationVar(&link.RTT, "rtt", link.RTT, "emulated round trip")
//	bw := fs.String("bandwidth", "100MB/s", "emulated download bandwidth")
//	fs.Parse(args)
//	if link.Bandwidth, err = wan.ParseBandwidth(*bw); err != nil { ... }
//	if err := wan.Reexec(); err != nil { ... } // the parent exits here
//	emu, err := emulator.Start(...)              // child: lo is up
//	shaper, err := wan.Start(emu.Addr(), link, log)
//	defer shaper.Close()
//	// point jitfs (and the pre-sync baseline) at shaper.Addr(), not emu.Addr()
//
// The child inherits the arguments, environment and standard streams, and
// the parent exits with the child's status, so callers and scripts see one
// program. Work done directly against the emulator (seeding it) is neither
// delayed nor capped.
//
// # Limits
//
// What the emulation does not reproduce, as measured on a 2-core machine:
//
//   - Connection setup is free: the proxy accepts at once, so the TCP (and,
//     in production, TLS) handshake costs no round trip. Connection reuse
//     gains less here than against real GCS.
//   - TCP itself sees loopback's microsecond round trip, since the latency is
//     added by the proxy above it: slow start and congestion control do not
//     behave as on a WAN, and a fresh connection runs at the cap at once.
//   - Under load, requests queue in htb behind bulk data, as at a real
//     bottleneck: with four downloads saturating the default link a small
//     GET took about 30 ms instead of 20.
//   - The proxy moves every byte through Go channels: it carried about
//     270 MB/s uncapped on two busy cores (130 MB/s under -race), so caps
//     near that, or a CPU-starved machine, deliver less than the cap. Check with [Shaper.Sent] and the
//     elapsed time rather than assuming the cap was met.
//   - Only downloads (IPv4, through Addr) are capped; uploads are not. Any
//     URL the emulator hands out with its own address (fake-gcs-server's
//     PublicHost) bypasses the link; [Shaper.Sent] shows whether the bytes
//     crossed it.
//
// # Requirements
//
// Root (to create the namespace and to run tc) and tc from Debian's iproute2
// package. Missing either yields [ErrNotRoot] or [ErrNoTC], whose text says
// what to do. [Check] reports which is missing before anything runs twice:
// `jitfs demo` calls it to fall back to no link, where the bench fails.
//
// # Errors
//
// Sentinels are [ErrNotRoot], [ErrNoTC], [ErrNotIsolated] and [ErrUncapped];
// failures of tc are wrapped with the command line and tc's own message.
//
// # Concurrency
//
// One [Shaper] at a time per namespace: it owns the root qdisc of lo, and a
// second Start fails while the first is open. A Shaper's methods are safe
// for concurrent use.
package wan
