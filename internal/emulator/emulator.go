package emulator

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// Options configures an emulator.
type Options struct {
	// Addr is host:port to listen on; port 0 picks a free one.
	Addr string
	// DataDir seeds buckets from DataDir/BUCKET/OBJECT files.
	DataDir string
	// Bucket and Objects seed one bucket from an fs.FS (paths become names).
	Bucket  string
	Objects fs.FS
	// Prefix is prepended to every name loaded from Objects.
	Prefix string
	// StorageRoot keeps object data on disk instead of memory (large
	// benchmark objects).
	StorageRoot string
	// Versioning keeps old generations readable after an overwrite.
	Versioning bool
	// Log receives the server's request log (default: discarded).
	Log io.Writer
	// Wrap, when set, wraps the server's HTTP handler: the bench counts
	// there the requests and bytes that crossed its emulated link.
	Wrap func(http.Handler) http.Handler
}

// Server is a running emulator.
type Server struct {
	*fakestorage.Server
	http *http.Server
	addr string
}

// Start starts an emulator.
func Start(opts Options) (*Server, error) {
	host, portStr, err := net.SplitHostPort(defaultStr(opts.Addr, "127.0.0.1:0"))
	if err != nil {
		return nil, fmt.Errorf("emulator: bad address %q: %w", opts.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("emulator: bad port in %q", opts.Addr)
	}
	// Listen first and keep the listener: picking a free port, closing it
	// and letting the emulator bind it again races with every other
	// process on the machine that binds port 0 meanwhile.
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("emulator: listen on %s: %w", net.JoinHostPort(host, portStr), err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ok := false
	defer func() {
		if !ok {
			ln.Close()
		}
	}()
	var objs []fakestorage.Object
	if opts.DataDir != "" {
		if objs, err = loadDir(opts.DataDir); err != nil {
			return nil, err
		}
	}
	if opts.Objects != nil {
		more, err := loadFS(opts.Bucket, opts.Prefix, opts.Objects)
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Host: host, Port: uint16(port), Scheme: "http", StorageRoot: opts.StorageRoot, Writer: logw,
		PublicHost: net.JoinHostPort(host, strconv.Itoa(port)), NoListener: true,
	})
	if err != nil {
		return nil, fmt.Errorf("emulator: start on %s:%d: %w", host, port, err)
	}
	buckets := map[string]bool{}
	if opts.Bucket != "" {
		buckets[opts.Bucket] = true
	}
	for _, o := range objs {
		buckets[o.BucketName] = true
	}
	for b := range buckets {
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b, VersioningEnabled: opts.Versioning})
	}
	for _, o := range objs {
		srv.CreateObject(o)
	}
	h := srv.HTTPHandler()
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}
	go func() { _ = hs.Serve(ln) }()
	ok = true
	return &Server{Server: srv, http: hs, addr: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

// Stop closes the listener and every connection, then the emulator.
func (s *Server) Stop() {
	_ = s.http.Close()
	s.Server.Stop()
}

// Addr is the host:port clients use as their endpoint.
func (s *Server) Addr() string { return s.addr }

// Put creates or overwrites an object, giving it a new generation.
func (s *Server) Put(bucket, name string, data []byte) {
	s.CreateObject(fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: name, Updated: time.Now()},
		Content:     data,
	})
}

func defaultStr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func loadDir(dir string) ([]fakestorage.Object, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("emulator: read data dir: %w", err)
	}
	var out []fakestorage.Object
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		objs, err := loadFS(e.Name(), "", os.DirFS(filepath.Join(dir, e.Name())))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func loadFS(bucket, prefix string, fsys fs.FS) ([]fakestorage.Object, error) {
	if bucket == "" {
		return nil, fmt.Errorf("emulator: objects given without a bucket name")
	}
	var out []fakestorage.Object
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		mt := time.Unix(1_700_000_000, 0)
		if info != nil && !info.ModTime().IsZero() {
			mt = info.ModTime()
		}
		out = append(out, fakestorage.Object{
			ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: prefix + p, Updated: mt},
			Content:     b,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("emulator: load objects for %s: %w", bucket, err)
	}
	return out, nil
}
