package namespace_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/internal/wan"
	"github.com/jitfs/jitfs/namespace"
)

// BenchmarkListAhead: a cold namespace over the bench's emulated link
// (20 ms round trips) resolves a path six directories deep, and walks a
// whole tree of 1,200 objects in 130 directories directory by directory
// as find does, with listing ahead off and on. It reports the list
// requests each costs.
//
//	go test ./namespace -run '^$' -bench ListAhead -benchtime 5x
func BenchmarkListAhead(b *testing.B) {
	w := testworld.New(b, testworld.Options{})
	w.PutDeepTree("show/")
	link, err := wan.Start(w.Proxy.Addr(), wan.Link{RTT: wan.DefaultRTT}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { link.Close() })
	gc, err := gcs.New(context.Background(), gcs.Options{Bucket: w.Bucket, Endpoint: link.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gc.Close() })
	ctx := context.Background()
	ops := map[string]func(ns *namespace.Namespace) error{
		"deep": func(ns *namespace.Namespace) error {
			_, err := ns.Lookup(ctx, "seq/sh07/comp/v001/exr/f.1030.exr")
			return err
		},
		"walk": func(ns *namespace.Namespace) error {
			var walk func(dir string) error
			walk = func(dir string) error {
				ents, err := ns.List(ctx, dir)
				for _, e := range ents {
					if err == nil && e.IsDir {
						err = walk(e.Path)
					}
				}
				return err
			}
			return walk("")
		},
	}
	for _, op := range []string{"deep", "walk"} {
		for _, ahead := range []int{0, namespace.DefaultListAhead} {
			b.Run(fmt.Sprintf("%s/ahead=%d", op, ahead), func(b *testing.B) {
				lists := w.Proxy.Lists.Load()
				var spent time.Duration
				for i := 0; i < b.N; i++ {
					ns, err := namespace.New(namespace.Options{Remote: gc, Prefix: "show", ListAhead: ahead})
					if err != nil {
						b.Fatal(err)
					}
					start := time.Now()
					err = ops[op](ns)
					spent += time.Since(start)
					ns.Close()
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(w.Proxy.Lists.Load()-lists)/float64(b.N), "lists/op")
				b.ReportMetric(spent.Seconds()*1000/float64(b.N), "ms/op")
			})
		}
	}
}
