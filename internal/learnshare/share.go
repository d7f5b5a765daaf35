package learnshare

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/jitfs/jitfs/gcs"
)

// MaxObjects bounds the objects read for one job and source: the newest,
// not the reader's own.
const MaxObjects = 8

// Bucket is what sharing needs of the learn bucket. *gcs.Client fits.
type Bucket interface {
	ListFlatPage(ctx context.Context, prefix, token string, pageSize int) (gcs.Page, error)
	ReadRange(ctx context.Context, name string, gen, off int64, p []byte) error
	Upload(ctx context.Context, name string, r io.ReaderAt, size int64, o gcs.UploadOptions) (gcs.Attrs, error)
}

func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// Dir is where the objects of job and source live under prefix ("" or
// ending in "/").
func Dir(prefix, job, source string) string {
	return fmt.Sprintf("%sv%d/%s/%s/", prefix, Version, hash16(job), hash16(source))
}

// NodeID is this node's id in object names: the host name and a random
// id kept in dir (made on first use), so two nodes never share one, and a
// node keeps its own across restarts and overwrites its own objects.
func NodeID(dir string) (string, error) {
	p := filepath.Join(dir, "node-id")
	if b, err := os.ReadFile(p); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" && clean(id) == id {
			return id, nil
		}
	}
	host, _ := os.Hostname()
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("learnshare: node id: %w", err)
	}
	id := hex.EncodeToString(r[:])
	if h := clean(host); h != "" {
		id = h + "-" + id
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("learnshare: node id: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("learnshare: node id: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("learnshare: node id: %w", err)
	}
	return id, nil
}

// clean keeps what an object name's last segment may safely hold.
func clean(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteRune(c)
		}
	}
	if len(s) > 64 || b.Len() != len(s) {
		return ""
	}
	return b.String()
}

// Publish writes data as the node's object in dir, its CRC-32C sent so
// GCS refuses a damaged upload.
func Publish(ctx context.Context, b Bucket, dir, node string, data []byte) error {
	if len(data) > MaxObjectBytes {
		return fmt.Errorf("learnshare: publish: %d bytes, at most %d", len(data), MaxObjectBytes)
	}
	_, err := b.Upload(ctx, dir+node, bytes.NewReader(data), int64(len(data)),
		gcs.UploadOptions{CRC32C: crc32.Checksum(data, castagnoli), ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("learnshare: publish %s%s: %w", dir, node, err)
	}
	return nil
}

// Ignored is an object read and set aside, and why.
type Ignored struct {
	Name string
	Err  error
}

// Read lists dir and reads the newest MaxObjects objects that are not
// node's own, in parallel. It returns the records that check out (newest
// first), the objects ignored, and an error only when the listing failed.
func Read(ctx context.Context, b Bucket, dir, node, job, source string) ([]Record, []Ignored, error) {
	var objs []gcs.Attrs
	for token := ""; ; {
		pg, err := b.ListFlatPage(ctx, dir, token, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("learnshare: list %s: %w", dir, err)
		}
		for _, o := range pg.Objects {
			if o.Name != dir+node && !strings.Contains(strings.TrimPrefix(o.Name, dir), "/") {
				objs = append(objs, o)
			}
		}
		// A directory of many nodes' objects is read one page at a time:
		// the listing of a prefix holding thousands is still bounded.
		if token = pg.Next; token == "" || len(objs) > 100*MaxObjects {
			break
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Updated.After(objs[j].Updated) })
	if len(objs) > MaxObjects {
		objs = objs[:MaxObjects]
	}
	recs := make([]*Record, len(objs))
	errs := make([]error, len(objs))
	var wg sync.WaitGroup
	for i, o := range objs {
		if o.Size > MaxObjectBytes || o.Size < int64(headLen) {
			errs[i] = fmt.Errorf("%w: %d bytes (%d to %d)", ErrMalformed, o.Size, headLen, MaxObjectBytes)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, o.Size)
			if err := b.ReadRange(ctx, o.Name, o.Generation, 0, buf); err != nil {
				errs[i] = err
				return
			}
			r, err := Decode(buf, job, source)
			if err != nil {
				errs[i] = err
				return
			}
			recs[i] = &r
		}()
	}
	wg.Wait()
	var out []Record
	var ign []Ignored
	for i, o := range objs {
		if errs[i] != nil {
			ign = append(ign, Ignored{Name: o.Name, Err: errs[i]})
			continue
		}
		out = append(out, *recs[i])
	}
	return out, ign, nil
}

// Malformed tells an object that does not check out from one that could
// not be read (the link's fault).
func Malformed(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrVersion)
}
