// Command jitfs is the jitfs daemon and its tools: one file per subcommand.
//
//	jitfs mount gs://BUCKET[/PREFIX] MOUNTPOINT [flags]   serve a bucket prefix
//	jitfs demo [--show-size SIZE] [--no-wan]             the embedded end-to-end demo, over an emulated WAN
//	jitfs emulator --data DIR --addr HOST:PORT           a local GCS emulator
//
// Errors before mounting are one line on stderr and a non-zero exit.
package main
