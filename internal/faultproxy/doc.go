// Package faultproxy is an HTTP proxy for tests and benchmarks that sits
// between jitfs and a GCS emulator. It counts requests by kind (list, stat,
// media download, upload) and bytes, and injects the faults jitfs must
// survive: 5xx replies, stalls, truncated bodies, a full outage, a download
// bandwidth cap, and for uploads failures by count, by time window or
// until cleared (with a chosen status, 503 or a permanent 403), stalls and
// an aggregate upload bandwidth cap. Resumable upload session URLs are
// rewritten to point back at the proxy, so every chunk crosses it.
package faultproxy
