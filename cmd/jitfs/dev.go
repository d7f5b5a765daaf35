//go:build !production

package main

// devCommands are the commands that carry a GCS emulator, Toxiproxy and
// the emulated WAN: the demo, the emulator and the bench. A production
// build (`go build -tags production ./cmd/jitfs`) leaves them out, and
// those libraries with them (README, "Builds").
func devCommands() []command {
	return []command{
		{"demo", "demo [--rtt 20ms] [--bandwidth 100MB/s] [--no-wan]: the embedded sample scene through a mount, over an emulated WAN (root, tc), against a pre-sync", runDemo},
		{"emulator", "emulator [--data DIR] [--addr HOST:PORT]: run a local GCS emulator", runEmulator},
		{"bench", "bench [--rtt 20ms] [--bandwidth 100MB/s] [--short] [--json] [TRACE...]: pre-sync vs jitfs over an emulated WAN", runBench},
	}
}
