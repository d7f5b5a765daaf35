package hooks

import (
	"fmt"
	"io/fs"
	"math"
	"path"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const (
	fuzzMount    = "/mnt/jitfs"
	fuzzMaxItems = 2000
	fuzzMaxWait  = time.Minute
)

// fuzzList is a mount where every directory holds three UDIM tiles of
// "c.<UDIM>.exr" and a few other names, except those named "gone".
func fuzzList(dir string) ([]string, error) {
	if path.Base(dir) == "gone" {
		return nil, fmt.Errorf("list %s: %w", dir, fs.ErrNotExist)
	}
	return []string{"c.1001.exr", "c.1002.exr", "c.1999.exr", "c.0999.exr", "x", "c.1003.exr.bak"}, nil
}

// FuzzDecodePrefetch feeds the request decoder and validator arbitrary
// bodies. It must never panic, must reject with a 4xx and a reason, and
// whatever it accepts must name only clean files strictly inside the
// mount, within the limits. Seeds are in testdata/fuzz/FuzzDecodePrefetch.
func FuzzDecodePrefetch(f *testing.F) {
	f.Add([]byte(`{"schema":"jitfs.prefetch/v1","job":{"id":"j"},"scope":"frame","frame":12,"wait_ms":5000,"items":[{"path":"/mnt/jitfs/a/b.exr"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		v := newValidator(fuzzMount, fuzzMaxItems, fuzzMaxWait, fuzzList)
		pln, rej := v.prefetch(body)
		if rej != nil {
			if pln != nil || rej.reason == "" || rej.status < 400 || rej.status > 499 {
				t.Fatalf("rejection %+v with plan %v", rej, pln)
			}
			return
		}
		p := pln.p
		if !p.Scope.Valid() || p.Priority < 0 || p.Priority > 100 || p.Wait < 0 || p.Wait > fuzzMaxWait {
			t.Fatalf("accepted scope %q priority %d wait %v", p.Scope, p.Priority, p.Wait)
		}
		if n := len(p.Wants) + len(pln.unmanaged) + len(pln.missing) + len(pln.failed); n > fuzzMaxItems {
			t.Fatalf("accepted %d items, limit %d", n, fuzzMaxItems)
		}
		seen := map[string]bool{}
		ranges := 0
		for _, w := range p.Wants {
			checkRel(t, w.Rel)
			if seen[w.Rel] {
				t.Fatalf("want %q twice", w.Rel)
			}
			seen[w.Rel] = true
			if w.Abs == "" || path.Clean(w.Abs) != path.Join(fuzzMount, w.Rel) {
				t.Fatalf("want %q names %q", w.Rel, w.Abs)
			}
			for _, r := range w.Ranges {
				if r.Off < 0 || r.Len <= 0 || r.Off > math.MaxInt64-r.Len {
					t.Fatalf("want %q has range %+v", w.Rel, r)
				}
			}
			ranges += len(w.Ranges)
		}
		if ranges > fuzzMaxItems {
			t.Fatalf("accepted %d ranges", ranges)
		}
		for _, u := range pln.unmanaged {
			c := path.Clean(u)
			if !strings.HasPrefix(u, "/") || c == fuzzMount || strings.HasPrefix(c, fuzzMount+"/") || strings.IndexByte(u, 0) >= 0 {
				t.Fatalf("unmanaged %q is inside the mount or not absolute", u)
			}
		}
	})
}

// checkRel is the promise the engine relies on: a clean relative name of
// a file strictly below the mount root.
func checkRel(t *testing.T, rel string) {
	t.Helper()
	if rel == "" || rel == "." || rel == ".." || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, "../") ||
		path.Clean(rel) != rel || strings.IndexByte(rel, 0) >= 0 || strings.Contains(rel, UDIMToken) {
		t.Fatalf("unclean Rel %q", rel)
	}
	if j := path.Join(fuzzMount, rel); !strings.HasPrefix(j, fuzzMount+"/") {
		t.Fatalf("Rel %q leaves the mount: %q", rel, j)
	}
}

// FuzzExpandPattern expands arbitrary patterns over arbitrary frame lists
// and comma-separated views. It must never panic, must respect the limit,
// and must agree with a reference built on fmt for the first path.
// Seeds are in testdata/fuzz/FuzzExpandPattern.
func FuzzExpandPattern(f *testing.F) {
	f.Add("/m/%V/plate_%v.%04d.exr", "1001-1010x3,-2", "left,right")
	f.Fuzz(func(t *testing.T, pattern, frameList, viewList string) {
		const limit = 1000
		var frames []int
		if frameList != "" {
			var err error
			if frames, err = parseFrames(frameList, limit); err != nil {
				return
			}
			if len(frames) == 0 || len(frames) > limit {
				t.Fatalf("parseFrames(%q) gave %d frames", frameList, len(frames))
			}
			seen := map[int]bool{}
			for _, fr := range frames {
				if seen[fr] || fr < -maxFrame || fr > maxFrame {
					t.Fatalf("parseFrames(%q): frame %d repeated or out of range", frameList, fr)
				}
				seen[fr] = true
			}
		}
		var views []string
		if viewList != "" {
			views = strings.Split(viewList, ",")
		}
		out, err := expandPattern(pattern, frames, views, limit)
		if err != nil {
			return
		}
		want := max(len(frames), 1) * max(len(views), 1)
		if len(out) != want || len(out) > limit {
			t.Fatalf("%d paths, want %d", len(out), want)
		}
		again, err := expandPattern(pattern, frames, views, limit)
		if err != nil || !reflect.DeepEqual(out, again) {
			t.Fatalf("not deterministic: %v", err)
		}
		if !strings.Contains(pattern, "%") {
			for _, p := range out {
				if p != pattern {
					t.Fatalf("literal pattern %q became %q", pattern, p)
				}
			}
		}
		var f0 int
		var v0 string
		if len(frames) > 0 {
			f0 = frames[0]
		}
		if len(views) > 0 {
			v0 = views[0]
		}
		if ref := referenceExpand(pattern, f0, v0); out[0] != ref {
			t.Fatalf("expand(%q, %d, %q) = %q, reference %q", pattern, f0, v0, out[0], ref)
		}
	})
}

// referenceExpand is a slow, independent expansion through fmt, for
// patterns expandPattern accepted.
func referenceExpand(pattern string, frame int, view string) string {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '%' {
			b.WriteByte(pattern[i])
			continue
		}
		i++
		switch c := pattern[i]; {
		case c == '%':
			b.WriteByte('%')
		case c == 'd':
			fmt.Fprintf(&b, "%d", frame)
		case c == 'V':
			b.WriteString(view)
		case c == 'v':
			// The first letter, or the first byte of text that is not UTF-8.
			_, n := utf8.DecodeRuneInString(view)
			b.WriteString(view[:n])
		case c == '0':
			fmt.Fprintf(&b, "%0*d", int(pattern[i+1]-'0'), frame)
			i += 2
		}
	}
	return b.String()
}
