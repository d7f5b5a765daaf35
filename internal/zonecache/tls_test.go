package zonecache

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestHTTPSOrigin: an https origin (as storage.googleapis.com is) is reached
// with SNI and its certificate verified: the zone serves through an origin
// whose CA it is given, and refuses (502) one it cannot verify rather
// than send its origin token to it.
func TestHTTPSOrigin(t *testing.T) {
	w := newWorld(t)
	certPEM, cert := selfSigned(t, "localhost")
	target, err := url.Parse(w.proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	var mu sync.Mutex
	var sni []string
	tlsOrigin := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sni = append(sni, r.TLS.ServerName)
		mu.Unlock()
		rp.ServeHTTP(rw, r)
	}))
	tlsOrigin.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	tlsOrigin.StartTLS()
	t.Cleanup(tlsOrigin.Close)
	origin := "https://localhost:" + strconv.Itoa(tlsOrigin.Listener.Addr().(*net.TCPAddr).Port)
	ca := filepath.Join(t.TempDir(), "origin-ca.pem")
	if err := os.WriteFile(ca, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(t.TempDir(), "origin-token")
	if err := os.WriteFile(tf, []byte("ya29.tls-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(14, 3*mib)
	gen := w.put(t, "tex/tls.tx", data)

	z := startZone(t, w, Options{Origin: origin, OriginCAFile: ca, OriginTokenFile: tf})
	wantRange(t, z.URL(), "tex/tls.tx", gen, data, mib-3, 2*mib+3)
	reqs := mustOrigin(w)
	if len(reqs) != 3 || reqs[0].Authorization != "Bearer ya29.tls-token" {
		t.Fatalf("origin requests %+v, want 3 slices with the zone's token", reqs)
	}
	mu.Lock()
	for _, name := range sni {
		if name != "localhost" {
			t.Errorf("the zone's TLS handshake named %q, want localhost (SNI)", name)
		}
	}
	if len(sni) == 0 {
		t.Error("no request reached the https origin")
	}
	mu.Unlock()

	// Verified against the system CAs, the self-signed origin fails: 502,
	// and nothing reaches it.
	untrusted := startZone(t, w, Options{Origin: origin, OriginTokenFile: tf})
	if status, _, _ := get(t, untrusted.URL(), "tex/tls.tx", gen, 0, 10); status != http.StatusBadGateway {
		t.Fatalf("through an origin the zone cannot verify: status %d, want 502", status)
	}
	if after := mustOrigin(w); len(after) != len(reqs) {
		t.Fatalf("requests reached an unverified origin: %+v", after[len(reqs):])
	}
}

// selfSigned is a self-signed certificate for host, as PEM and for a
// tls.Config.
func selfSigned(t *testing.T, host string) ([]byte, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, pair
}
