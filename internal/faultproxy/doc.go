// Package faultproxy is an HTTP proxy for tests and benchmarks that sits
// between jitfs and a GCS emulator. It counts requests by kind (list, stat,
// media download) and bytes, and injects the faults jitfs must survive:
// 5xx replies, stalls, truncated bodies, a full outage, and a bandwidth cap.
package faultproxy
