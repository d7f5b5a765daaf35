//go:build !production

package main

// devCommands are the commands that carry a GCS emulator, Toxiproxy and
// the emulated WAN: the demo, the emulator and the bench. A production
// build (`go build -tags production ./cmd/jitfs`) leaves them out, and
// those libraries with them (README, "Builds").
// leftOut: a development build leaves nothing out (see prod.go).
var leftOut []string

func devCommands() []command {
	return []command{
		{name: "demo", group: "other", short: "the sample scene through a mount over an emulated WAN, against a pre-sync of the whole show",
			examples: "  jitfs demo\n  jitfs demo --rtt 50ms --bandwidth 50MB/s\n  jitfs demo --show-size 1GiB\n  jitfs demo --no-wan", run: runDemo},
		{name: "emulator", group: "other", short: "run a local Cloud Storage emulator (fake-gcs-server) holding the sample scene",
			examples: "  jitfs emulator --addr 127.0.0.1:4443\n  STORAGE_EMULATOR_HOST=127.0.0.1:4443 jitfs mount gs://jitfs-demo/show /mnt/show", run: runEmulator},
		{name: "bench", args: "[TRACE...]", group: "traces", short: "pre-sync, gcsfuse, rclone and jitfs over an emulated WAN, side by side",
			examples: "  jitfs bench --short\n  jitfs bench --rtt 20ms --bandwidth 100MB/s testdata/traces/*.jsonl.zst\n  jitfs bench --farm", run: runBench},
	}
}
