package zonecache

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"
)

// BenchmarkSlice measures what the slice size costs the first node to read
// through a cold zone cache, for jitfs's two read shapes: sequential
// readers' 8 MiB aligned parts (4 in flight) and random readers' 64 KiB
// blocks. The origin is modelled as a remote GCS: every response starts
// after 30 ms and streams at 100 MiB/s (model parameters, not measured GCS
// figures). "direct" is a node reading the modelled origin without the
// zone. Reported: the time per part or block, and the bytes and requests
// the origin served per op. docs/zone.md has the table and the choice.
func BenchmarkSlice(b *testing.B) {
	slices := []int64{256 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20}
	size := 128 * mib
	if testing.Short() {
		slices = []int64{1 << 20}
		size = 32 * mib
	}
	w := newWorld(b)
	w.ttfb, w.rate = 30*time.Millisecond, 100*mib
	data := randomBytes(42, size)
	gen := w.put(b, "bench/big.vdb", data)

	run := func(b *testing.B, slice int64, read func(b *testing.B, base string) int) {
		var ops int
		var elapsed time.Duration
		reqs0, bytes0 := w.origin()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			base := w.proxy.URL
			var z *Proc
			if slice > 0 {
				z = startZone(b, w, Options{Slice: slice, CacheDir: b.TempDir()})
				base = z.URL()
			}
			b.StartTimer()
			t0 := time.Now()
			ops += read(b, base)
			elapsed += time.Since(t0)
			b.StopTimer()
			if z != nil {
				if err := z.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
		reqs1, bytes1 := w.origin()
		b.ReportMetric(float64(elapsed.Milliseconds())/float64(ops), "ms/read")
		b.ReportMetric(float64(bytes1-bytes0)/float64(ops)/mib, "origin-MiB/read")
		b.ReportMetric(float64(len(reqs1)-len(reqs0))/float64(ops), "origin-reqs/read")
	}

	// sequential: the first 32 MiB as 8 MiB parts, 4 in flight.
	sequential := func(b *testing.B, base string) int {
		const part, inflight = 8 * mib, 4
		parts := 32 * mib / part
		var wg sync.WaitGroup
		sem := make(chan struct{}, inflight)
		for p := 0; p < parts; p++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(off int64) {
				defer wg.Done()
				defer func() { <-sem }()
				benchRead(b, base, gen, data, off, off+part)
			}(int64(p * part))
		}
		wg.Wait()
		return parts
	}
	// random: one 64 KiB block in each 8 MiB region, one at a time, so
	// every read is a miss whatever the slice.
	random := func(b *testing.B, base string) int {
		r := rand.New(rand.NewPCG(7, 7))
		regions := len(data) / (8 * mib)
		for i := 0; i < regions; i++ {
			off := int64(i*8*mib) + int64(r.IntN(8*mib/65536))*65536
			benchRead(b, base, gen, data, off, off+65536)
		}
		return regions
	}

	b.Run("direct/sequential", func(b *testing.B) { run(b, 0, sequential) })
	b.Run("direct/random", func(b *testing.B) { run(b, 0, random) })
	for _, s := range slices {
		b.Run(fmt.Sprintf("slice=%dKiB/sequential", s>>10), func(b *testing.B) { run(b, s, sequential) })
		b.Run(fmt.Sprintf("slice=%dKiB/random", s>>10), func(b *testing.B) { run(b, s, random) })
	}
}

// benchRead reads [off, end) of the object and checks the bytes.
func benchRead(b *testing.B, base string, gen int64, data []byte, off, end int64) {
	req, err := http.NewRequest(http.MethodGet, objectURL(base, "bench/big.vdb", gen), nil)
	if err != nil {
		b.Error(err)
		return
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end-1))
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[off:end]) {
		b.Errorf("[%d,%d): status %d, err %v, or bytes differ", off, end, resp.StatusCode, err)
	}
}
